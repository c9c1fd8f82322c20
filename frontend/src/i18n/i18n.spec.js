import { mount } from '@vue/test-utils'
import { afterEach, describe, expect, it } from 'vitest'
import { h, nextTick } from 'vue'
import {
  countOf, formatBytes, formatDate, formatDuration, formatNumber, formatPercent, formatSeconds, labelOf,
} from '../format.js'
import { errorMessage } from './errors.js'
import { detectLocale, i18n, liveText, setLocale, t } from './index.js'
import en from './locales/en.json'
import ru from './locales/ru.json'

afterEach(() => localStorage.clear())

describe('the language', () => {
  it('comes from the browser, the first of its languages the UI speaks', () => {
    expect(detectLocale({ stored: null, languages: ['ru-RU', 'ru', 'en-US'] })).toBe('ru')
    expect(detectLocale({ stored: null, languages: ['de-DE', 'ru'] })).toBe('ru')
    expect(detectLocale({ stored: null, languages: ['en-GB', 'ru'] })).toBe('en')
    expect(detectLocale({ stored: null, languages: ['de-DE', 'fr'] })).toBe('en')
    expect(detectLocale({ stored: null, languages: [] })).toBe('en')
  })

  it('is the remembered choice once the operator picked one', () => {
    setLocale('ru')
    expect(localStorage.getItem('cd.locale')).toBe('ru')
    expect(detectLocale({ languages: ['en-US'] })).toBe('ru')
    expect(document.documentElement.lang).toBe('ru')
    expect(detectLocale({ stored: 'xx', languages: ['en-US'] })).toBe('en') // a stale value is ignored
  })

  it('is ignored when it is not one the UI has', () => {
    setLocale('de')
    expect(i18n.global.locale.value).toBe('en')
  })
})

describe('Russian plural forms', () => {
  it('follow the number (1 звонок, 2 звонка, 5 звонков, 21 звонок)', () => {
    setLocale('ru', { remember: false })
    const calls = [0, 1, 2, 4, 5, 11, 12, 14, 21, 22, 25, 101, 111, 1.5].map((n) => countOf('calls.count', n))
    expect(calls).toEqual([
      '0 звонков', '1 звонок', '2 звонка', '4 звонка', '5 звонков', '11 звонков', '12 звонков', '14 звонков',
      '21 звонок', '22 звонка', '25 звонков', '101 звонок', '111 звонков', '1,5 звонка',
    ])
    expect(countOf('calls.found', 21)).toBe('Найден 21 звонок')
    expect(countOf('calls.found', 3)).toBe('Найдено 3 звонка')
    expect(countOf('destinations.signatures', 2)).toBe('2 подписи')
    expect(countOf('calls.count', 12345)).toBe('12\u00a0345 звонков')
  })

  it('and English ones', () => {
    expect([0, 1, 2, 21].map((n) => countOf('calls.count', n))).toEqual(['0 calls', '1 call', '2 calls', '21 calls'])
    expect(countOf('calls.count', 12345)).toBe('12,345 calls')
  })
})

describe('formatting for the chosen language', () => {
  const at = '2026-03-05T14:07:09Z'

  it('writes numbers, sizes, latencies and dates the Russian way', () => {
    setLocale('ru', { remember: false })
    expect(formatNumber(1234567.5)).toBe('1\u00a0234\u00a0567,5')
    expect(formatBytes(1536)).toBe('1,5 кБ')
    expect(formatBytes(5_242_880)).toBe('5,2 МБ')
    expect(formatBytes(512)).toBe('512 Б')
    expect(formatSeconds(0.85)).toBe('850 мс')
    expect(formatSeconds(4.25)).toBe('4,3 с')
    expect(formatSeconds(210)).toBe('3,5 мин')
    expect(formatPercent(0.4)).toBe('40\u00a0%')
    expect(formatDate(at)).toBe(new Intl.DateTimeFormat('ru', {
      year: 'numeric', month: 'short', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit',
    }).format(new Date(at)))
    expect(formatDate(at)).toMatch(/мар/)
    expect(formatDuration(3725)).toBe('1:02:05')
  })

  it('and the English way', () => {
    expect(formatNumber(1234567.5)).toBe('1,234,567.5')
    expect(formatBytes(1536)).toBe('1.5 kB')
    expect(formatSeconds(4.25)).toBe('4.3 sec')
    expect(formatPercent(0.4)).toBe('40%')
    expect(formatDate(at)).toMatch(/Mar/)
  })

  it('names the values the server sends, and keeps an unknown one readable', () => {
    setLocale('ru', { remember: false })
    expect(labelOf('status', 'delivered')).toBe('Доставлен')
    expect(labelOf('reasons', 'ai_unavailable')).toBe('ИИ недоступен')
    expect(labelOf('reasons', 'brand_new_reason')).toBe('brand new reason')
  })
})

describe('error messages', () => {
  const refused = (code, message, status = 422) => ({ response: { status, data: { error: { code, message } } } })

  it('are keyed on the error code, in the chosen language, quoting the server where it helps', () => {
    setLocale('ru', { remember: false })
    expect(errorMessage(refused('invalid_credentials', 'invalid credentials', 401))).toBe('Неверное имя пользователя или пароль.')
    expect(errorMessage(refused('invalid_url', 'url: the address is not allowed'))).toBe(
      'Этот адрес нельзя использовать: url: the address is not allowed',
    )
    setLocale('en', { remember: false })
    expect(errorMessage(refused('invalid_credentials', 'invalid credentials', 401))).toBe('Wrong username or password.')
  })

  it('have a translated fallback for a code the UI does not know', () => {
    setLocale('ru', { remember: false })
    expect(errorMessage(refused('quota_exceeded', 'the monthly quota is used up', 429))).toBe(
      'Сервер отклонил запрос (quota_exceeded): the monthly quota is used up',
    )
    setLocale('en', { remember: false })
    expect(errorMessage(refused('quota_exceeded', 'the monthly quota is used up', 429))).toBe(
      'The server refused the request (quota_exceeded): the monthly quota is used up',
    )
  })

  it('cover failures without an API error body', () => {
    setLocale('ru', { remember: false })
    expect(errorMessage({ response: { status: 502, data: '<html>' } })).toBe('Сервер ответил кодом 502.')
    expect(errorMessage({ message: 'Network Error' })).toBe('Сервер недоступен.')
    expect(errorMessage({ code: 'ECONNABORTED', message: 'timeout of 30000ms exceeded' })).toBe('Сервер не ответил вовремя.')
    expect(errorMessage(new Error('boom'))).toBe('Что-то пошло не так.')
    expect(errorMessage(null)).toBe('')
  })

  it('exist for the same codes in both languages', () => {
    expect(Object.keys(ru.errors.codes).sort()).toEqual(Object.keys(en.errors.codes).sort())
    expect(Object.keys(en.errors.codes).length).toBeGreaterThan(40)
  })
})

describe('a switch of language', () => {
  it('rewrites what is on the page, messages already shown included', async () => {
    const notice = liveText()
    const Probe = { render: () => h('p', `${t('titles.calls')} · ${notice.value} · ${formatBytes(2048)}`) }
    notice.value = () => t('users.created', { name: 'olga' })
    const wrapper = mount(Probe)
    expect(wrapper.text()).toBe('Calls · User olga created. · 2.0 kB')
    setLocale('ru', { remember: false })
    await nextTick()
    expect(wrapper.text()).toBe('Звонки · Пользователь olga создан. · 2,0 кБ')
    notice.value = ''
    await nextTick()
    expect(wrapper.text()).toBe('Звонки ·  · 2,0 кБ')
  })
})
