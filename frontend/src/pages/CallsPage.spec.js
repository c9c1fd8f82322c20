import { flushPromises, mount } from '@vue/test-utils'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { createMemoryHistory } from 'vue-router'

vi.mock('../api/calls.js', () => ({ calls: { list: vi.fn(), sources: vi.fn() } }))
const { calls } = await import('../api/calls.js')
const { setTokens, clearSession } = await import('../api/session.js')
const { createAppRouter } = await import('../router.js')
const { setLocale } = await import('../i18n/index.js')
const { default: CallsPage } = await import('./CallsPage.vue')

const CALL = {
  id: '4f1c0d9e-0000-4000-8000-000000000001', external_id: 'CALL-7', status: 'failed', source: 'pbx',
  received_at: '2026-03-05T14:07:09Z', duration_seconds: 75.4, format: 'mp3', size_bytes: 1_536_000,
  error: { stage: 'call-ai', reason: 'ai_unavailable' },
}

async function mountWith(total) {
  setTokens({ access_token: 'a', refresh_token: 'r', role: 'operator' }, 'o')
  calls.list.mockResolvedValue({ items: [CALL], next_cursor: null, counts: { failed: total }, total })
  calls.sources.mockResolvedValue({ items: [] })
  const router = createAppRouter(createMemoryHistory())
  router.push('/calls')
  await router.isReady()
  const wrapper = mount(CallsPage, { global: { plugins: [router] } })
  await flushPromises()
  return wrapper
}

describe('CallsPage', () => {
  afterEach(() => clearSession())

  it('counts calls with the Russian plural forms', async () => {
    setLocale('ru', { remember: false })
    for (const [total, words] of [[1, '1 звонок'], [2, '2 звонка'], [5, '5 звонков'], [21, '21 звонок']]) {
      const wrapper = await mountWith(total)
      expect(wrapper.get('[data-testid=calls-pager]').text()).toBe(`Страница 1 · ${words}`)
      wrapper.unmount()
    }
  })

  it('shows a row in the chosen language and format', async () => {
    setLocale('ru', { remember: false })
    const wrapper = await mountWith(1)
    const row = wrapper.get('tbody tr')
    expect(row.text()).toContain('Ошибка')
    expect(row.text()).toContain('call-ai: ИИ недоступен')
    expect(row.text()).toContain('1,5 МБ')
    expect(row.text()).toContain('1:15')
    expect(row.text()).toMatch(/мар/) // March, in Russian
    expect(wrapper.get('caption').text()).toBe('Найден 1 звонок')
    expect(wrapper.get('label[for=search]').text()).toBe('Поиск')

    setLocale('en', { remember: false })
    await flushPromises()
    expect(row.text()).toContain('Failed')
    expect(row.text()).toContain('1.5 MB')
    expect(row.text()).toMatch(/Mar/)
    expect(wrapper.get('[data-testid=calls-pager]').text()).toBe('Page 1 · 1 call')
  })
})
