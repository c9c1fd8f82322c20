import { flushPromises, mount } from '@vue/test-utils'
import { beforeEach, describe, expect, it, vi } from 'vitest'
import { createMemoryHistory } from 'vue-router'

vi.mock('../api/auth.js', () => ({ signIn: vi.fn() }))
const { signIn } = await import('../api/auth.js')
const { setTokens, clearSession } = await import('../api/session.js')
const { createAppRouter } = await import('../router.js')
const { default: SignInPage } = await import('./SignInPage.vue')

// The next page is imported lazily: on a loaded machine that takes longer than waitFor's 1 s.
const WAIT = { timeout: 15000 }

async function mountAt(path) {
  const router = createAppRouter(createMemoryHistory())
  router.push(path)
  await router.isReady()
  const wrapper = mount(SignInPage, { global: { plugins: [router] } })
  return { wrapper, router }
}

describe('SignInPage', () => {
  beforeEach(() => {
    localStorage.clear()
    clearSession()
    signIn.mockReset()
  })

  it('has labelled fields and signs in, then goes where the user was going', async () => {
    signIn.mockImplementation(async () => setTokens({ access_token: 'a', refresh_token: 'r', role: 'operator' }, 'olga'))
    const { wrapper, router } = await mountAt('/login?next=/calls%3Fstatus%3Dfailed')
    expect(wrapper.get('label[for=username]').text()).toBe('Username')
    expect(wrapper.get('label[for=password]').text()).toBe('Password')
    await wrapper.get('#username').setValue('olga')
    await wrapper.get('#password').setValue('secret-password')
    await wrapper.get('form').trigger('submit')
    await flushPromises()
    expect(signIn).toHaveBeenCalledWith('olga', 'secret-password')
    // the next page loads lazily
    await vi.waitFor(() => expect(router.currentRoute.value.fullPath).toBe('/calls?status=failed'), WAIT)
  })

  it('says when the password is wrong and clears it', async () => {
    signIn.mockRejectedValue({ response: { status: 401, data: { error: { code: 'invalid_credentials', message: 'invalid credentials' } } } })
    const { wrapper } = await mountAt('/login')
    await wrapper.get('#username').setValue('olga')
    await wrapper.get('#password').setValue('nope')
    await wrapper.get('form').trigger('submit')
    await flushPromises()
    expect(wrapper.get('[role=alert]').text()).toBe('Wrong username or password.')
    expect(wrapper.get('#password').element.value).toBe('')
  })

  it('explains an ended session and ignores a foreign next', async () => {
    signIn.mockImplementation(async () => setTokens({ access_token: 'a', refresh_token: 'r', role: 'viewer' }, 'v'))
    const { wrapper, router } = await mountAt('/login?expired=1&next=//evil.example/x')
    expect(wrapper.text()).toContain('Your session has ended')
    await wrapper.get('#username').setValue('v')
    await wrapper.get('#password').setValue('pw')
    await wrapper.get('form').trigger('submit')
    await flushPromises()
    await vi.waitFor(() => expect(router.currentRoute.value.name).toBe('dashboard'), WAIT)
  })
})
