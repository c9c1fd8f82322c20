import { flushPromises, mount } from '@vue/test-utils'
import { describe, expect, it, vi } from 'vitest'
import { createMemoryHistory } from 'vue-router'

vi.mock('../api/calls.js', () => ({ calls: { upload: vi.fn(), get: vi.fn() } }))
const { calls } = await import('../api/calls.js')
const { setTokens } = await import('../api/session.js')
const { createAppRouter } = await import('../router.js')
const { default: UploadPage } = await import('./UploadPage.vue')

describe('UploadPage', () => {
  it('takes several dropped files and shows a progress bar for each', async () => {
    setTokens({ access_token: 'a', refresh_token: 'r', role: 'operator' }, 'o')
    const progress = {}
    const finish = {}
    calls.upload.mockImplementation((file, { onProgress }) => {
      progress[file.name] = onProgress
      return new Promise((resolve) => (finish[file.name] = resolve))
    })
    const router = createAppRouter(createMemoryHistory())
    const wrapper = mount(UploadPage, { global: { plugins: [router] } })
    const files = [new File(['a'], 'one.mp3'), new File(['bb'], 'two.wav')]
    await wrapper.get('[data-testid=drop-zone]').trigger('drop', { dataTransfer: { files } })
    await flushPromises()
    const bars = wrapper.findAll('[role=progressbar]')
    expect(bars.map((b) => b.attributes('aria-label'))).toEqual(['Upload of one.mp3', 'Upload of two.wav'])
    progress['one.mp3'](0.4)
    progress['two.wav'](0.9)
    await flushPromises()
    expect(wrapper.findAll('[role=progressbar]').map((b) => b.attributes('aria-valuenow'))).toEqual(['40', '90'])
    finish['one.mp3']({ id: 'c1', status: 'received' })
    await flushPromises()
    expect(wrapper.get('[data-testid="upload-one.mp3"]').text()).toContain('Accepted')
    expect(wrapper.get('[data-testid="upload-one.mp3"]').text()).toContain('Open the call')
  })

  it('refuses metadata that is not a JSON object', async () => {
    setTokens({ access_token: 'a', refresh_token: 'r', role: 'operator' }, 'o')
    calls.upload.mockReset()
    const router = createAppRouter(createMemoryHistory())
    const wrapper = mount(UploadPage, { global: { plugins: [router] } })
    await wrapper.get('#metadata').setValue('[1, 2]')
    await wrapper.get('[data-testid=drop-zone]').trigger('drop', { dataTransfer: { files: [new File(['a'], 'x.mp3')] } })
    expect(wrapper.get('#metadata-error').text()).toContain('JSON object')
    expect(calls.upload).not.toHaveBeenCalled()
  })
})
