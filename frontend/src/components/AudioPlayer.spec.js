import { flushPromises, mount } from '@vue/test-utils'
import { beforeEach, describe, expect, it, vi } from 'vitest'

vi.mock('../api/calls.js', () => ({ calls: { audioLink: vi.fn() } }))
const { calls } = await import('../api/calls.js')
const { default: AudioPlayer } = await import('./AudioPlayer.vue')
const { setLocale } = await import('../i18n/index.js')

describe('AudioPlayer', () => {
  beforeEach(() => {
    calls.audioLink.mockReset()
  })

  it('plays from a signed link and seeks with the buttons', async () => {
    calls.audioLink.mockResolvedValue({ url: '/api/v1/calls/c1/audio?access=tok', expires_at: new Date(Date.now() + 3600e3).toISOString() })
    const wrapper = mount(AudioPlayer, { props: { callId: 'c1' } })
    await flushPromises()
    expect(calls.audioLink).toHaveBeenCalledWith('c1')
    const audio = wrapper.get('[data-testid=audio-player]')
    expect(audio.attributes('src')).toBe('/api/v1/calls/c1/audio?access=tok')
    Object.defineProperty(audio.element, 'duration', { value: 60, configurable: true })
    audio.element.currentTime = 5
    await wrapper.findAll('button').find((b) => b.text() === '+ 10 s').trigger('click')
    expect(audio.element.currentTime).toBe(15)
    await wrapper.findAll('button').find((b) => b.text() === '− 10 s').trigger('click')
    await wrapper.findAll('button').find((b) => b.text() === '− 10 s').trigger('click')
    expect(audio.element.currentTime).toBe(0)
    expect(wrapper.get('a[download]').attributes('href')).toContain('download=1')
  })

  it('shows why the recording cannot be loaded', async () => {
    calls.audioLink.mockRejectedValue({ response: { status: 404, data: { error: { message: 'no such call' } } } })
    const wrapper = mount(AudioPlayer, { props: { callId: 'c2' } })
    await flushPromises()
    expect(wrapper.get('[role=alert]').text()).toContain('no such call')
  })

  it('says beside the download when the browser cannot play the format', async () => {
    calls.audioLink.mockResolvedValue({ url: '/a?access=tok', expires_at: new Date(Date.now() + 3600e3).toISOString() })
    const wrapper = mount(AudioPlayer, { props: { callId: 'c4', format: 'amr', codec: 'amr_nb' } })
    await flushPromises()
    expect(wrapper.find('audio').exists()).toBe(false)
    expect(wrapper.get('[data-testid=audio-not-playable]').text()).toContain('cannot play AMR-NB recordings')
    expect(wrapper.get('a[download]').attributes('href')).toBe('/a?access=tok&download=1')
  })

  it('says it in Russian too', async () => {
    calls.audioLink.mockResolvedValue({ url: '/a?access=tok', expires_at: new Date(Date.now() + 3600e3).toISOString() })
    setLocale('ru', { remember: false })
    try {
      const wrapper = mount(AudioPlayer, { props: { callId: 'c5', format: 'wma', codec: 'wmav2' } })
      await flushPromises()
      expect(wrapper.get('[data-testid=audio-not-playable]').text()).toBe(
        'Этот браузер не воспроизводит записи WMA. Скачайте файл, чтобы прослушать его.',
      )
      expect(wrapper.get('a[download]').text()).toBe('Скачать')
    } finally {
      setLocale('en', { remember: false })
    }
  })

  it('renews an expired link once', async () => {
    calls.audioLink
      .mockResolvedValueOnce({ url: '/a?access=old', expires_at: new Date(Date.now() - 1000).toISOString() })
      .mockResolvedValueOnce({ url: '/a?access=new', expires_at: new Date(Date.now() + 3600e3).toISOString() })
    const wrapper = mount(AudioPlayer, { props: { callId: 'c3' } })
    await flushPromises()
    await wrapper.get('audio').trigger('error')
    await flushPromises()
    expect(wrapper.get('audio').attributes('src')).toBe('/a?access=new')
  })
})
