import { beforeEach, describe, expect, it } from 'vitest'
import { clearSession, setTokens } from './api/session.js'
import { guard, homeFor } from './router.js'

const route = (name, path, meta = {}) => ({ name, path, fullPath: path, meta })

describe('route guard', () => {
  beforeEach(() => {
    localStorage.clear()
    clearSession()
  })

  it('sends a signed-out visitor to sign-in, remembering where they were going', () => {
    expect(guard(route('calls', '/calls?status=failed', { needs: 'read' }))).toEqual({
      name: 'login', query: { next: '/calls?status=failed' },
    })
  })

  it('keeps admin pages from other roles', () => {
    setTokens({ access_token: 'a', refresh_token: 'r', role: 'viewer' }, 'v')
    const result = guard(route('users', '/users', { needs: 'admin' }))
    expect(result.name).toBe('not-found')
    expect(guard(route('calls', '/calls', { needs: 'read' }))).toBe(true)
  })

  it('sends a source to its calls rather than the dashboard', () => {
    setTokens({ access_token: 'a', refresh_token: 'r', role: 'source' }, 's')
    expect(guard(route('dashboard', '/', { needs: 'stats' }))).toEqual({ name: 'calls' })
    expect(homeFor('operator')).toEqual({ name: 'dashboard' })
  })

  it('skips the sign-in page when signed in', () => {
    setTokens({ access_token: 'a', refresh_token: 'r', role: 'admin' }, 'a')
    expect(guard(route('login', '/login', { public: true }))).toEqual({ name: 'dashboard' })
  })
})
