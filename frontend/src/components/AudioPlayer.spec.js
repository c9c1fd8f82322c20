import { flushPromises, mount } from '@vue/test-utils'
import { beforeEach, describe, expect, it, vi } from 'vitest'

vi.mock('../api/calls.js', () => ({ calls: { audioLink: vi.fn() } }))
const { calls } = await import('../api/calls.js')
const { default: AudioPlayer } = await import('./AudioPlayer.vue')

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
