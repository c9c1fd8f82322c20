import { flushPromises, mount } from '@vue/test-utils'
import { beforeEach, describe, expect, it, vi } from 'vitest'
import { createMemoryHistory } from 'vue-router'

vi.mock('../api/auth.js', () => ({
  apiKeys: { list: vi.fn(), create: vi.fn(), revoke: vi.fn() },
  users: { list: vi.fn() },
}))
const { apiKeys, users } = await import('../api/auth.js')
const { setTokens } = await import('../api/session.js')
const { createAppRouter } = await import('../router.js')
const { default: ApiKeysPage } = await import('./ApiKeysPage.vue')

describe('ApiKeysPage', () => {
  beforeEach(() => {
    setTokens({ access_token: 'a', refresh_token: 'r', role: 'admin' }, 'admin')
    users.list.mockResolvedValue({ items: [
      { id: 'u-admin', username: 'admin', role: 'admin', active: true },
      { id: 'u-pbx', username: 'pbx', role: 'source', active: true },
      { id: 'u-viewer', username: 'vera', role: 'viewer', active: true },
    ] })
    apiKeys.list.mockResolvedValue({ items: [] })
  })

  it('shows a new key once, with a copy button', async () => {
    const writeText = vi.fn().mockResolvedValue()
    Object.defineProperty(navigator, 'clipboard', { value: { writeText }, configurable: true })
    const router = createAppRouter(createMemoryHistory())
    const wrapper = mount(ApiKeysPage, { global: { plugins: [router] } })
    await flushPromises()
    expect(wrapper.text()).toContain('No API keys yet')
    // keys are for source accounts or yourself: a viewer is not offered
    const owners = wrapper.findAll('#key-owner option').map((o) => o.text())
    expect(owners).toEqual(['admin (admin)', 'pbx (source)'])
    expect(wrapper.get('#key-owner').element.value).toBe('u-pbx')

    apiKeys.create.mockResolvedValue({ id: 'k1', key: 'cdk_secret_value', prefix: 'cdk_secr', name: 'PBX', username: 'pbx' })
    apiKeys.list.mockResolvedValue({ items: [{ id: 'k1', prefix: 'cdk_secr', name: 'PBX', username: 'pbx', active: true }] })
    await wrapper.get('#key-name').setValue('PBX')
    await wrapper.get('form').trigger('submit')
    await flushPromises()
    expect(apiKeys.create).toHaveBeenCalledWith({ name: 'PBX', user_id: 'u-pbx' })
    expect(wrapper.get('[data-testid=secret-value]').text()).toBe('cdk_secret_value')
    await wrapper.findAll('button').find((b) => b.text() === 'Copy').trigger('click')
    await flushPromises()
    expect(writeText).toHaveBeenCalledWith('cdk_secret_value')
    expect(wrapper.text()).toContain('Copied')
    // the list never shows the key, only its prefix
    expect(wrapper.get('[data-testid=api-keys]').text()).not.toContain('cdk_secret_value')
    await wrapper.findAll('button').find((b) => b.text() === 'I have copied it').trigger('click')
    expect(wrapper.find('[data-testid=secret-value]').exists()).toBe(false)
  })
})
