import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { createHttp, onSessionExpired } from './http.js'
import { clearSession, session, setTokens } from './session.js'

// A fake server: answers by URL, records every request with its Authorization header.
function fakeServer(handlers) {
  const seen = []
  const adapter = async (config) => {
    seen.push({ url: config.url, auth: config.headers?.Authorization || config.headers?.get?.('Authorization') })
    const answer = await handlers(config, seen)
    const response = { data: answer.data ?? {}, status: answer.status, statusText: '', headers: {}, config, request: {} }
    if (answer.status >= 400) {
      const error = new Error(`HTTP ${answer.status}`)
      error.config = config
      error.response = response
      error.isAxiosError = true
      throw error
    }
    return response
  }
  return { adapter, seen }
}

describe('the one Axios instance', () => {
  beforeEach(() => {
    localStorage.clear()
    clearSession()
    setTokens({ access_token: 'old-access', refresh_token: 'refresh-1', role: 'operator' }, 'olga')
  })
  afterEach(() => onSessionExpired(() => {}))

  it('sends the access token', async () => {
    const { adapter, seen } = fakeServer(() => ({ status: 200, data: { ok: true } }))
    const http = createHttp({ adapter })
    await http.get('/api/v1/calls')
    expect(seen[0].auth).toBe('Bearer old-access')
  })

  it('refreshes once on a 401 and retries with the new token', async () => {
    const { adapter, seen } = fakeServer((config) => {
      if (config.url === '/api/v1/auth/refresh') {
        return { status: 200, data: { access_token: 'new-access', refresh_token: 'refresh-2', role: 'operator' } }
      }
      const auth = config.headers.Authorization
      return auth === 'Bearer new-access' ? { status: 200, data: { url: config.url } } : { status: 401 }
    })
    const http = createHttp({ adapter })
    // two requests fail at once: one refresh serves both
    const [a, b] = await Promise.all([http.get('/api/v1/calls'), http.get('/api/v1/stats')])
    expect(a.data.url).toBe('/api/v1/calls')
    expect(b.data.url).toBe('/api/v1/stats')
    expect(seen.filter((s) => s.url === '/api/v1/auth/refresh')).toHaveLength(1)
    expect(seen.find((s) => s.url === '/api/v1/auth/refresh').auth).toBeFalsy()
    expect(session.accessToken).toBe('new-access')
    expect(JSON.parse(localStorage.getItem('cd.session')).refreshToken).toBe('refresh-2')
  })

  it('ends the session and tells the app when the refresh fails', async () => {
    const expired = vi.fn()
    onSessionExpired(expired)
    const { adapter } = fakeServer((config) =>
      config.url === '/api/v1/auth/refresh' ? { status: 401, data: { error: { message: 'invalid' } } } : { status: 401 },
    )
    const http = createHttp({ adapter })
    await expect(http.get('/api/v1/calls')).rejects.toThrow()
    expect(expired).toHaveBeenCalledTimes(1)
    expect(session.accessToken).toBeNull()
    expect(localStorage.getItem('cd.session')).toBeNull()
  })

  it('does not refresh for a wrong password at sign-in', async () => {
    const expired = vi.fn()
    onSessionExpired(expired)
    clearSession()
    const { adapter, seen } = fakeServer(() => ({ status: 401 }))
    const http = createHttp({ adapter })
    await expect(http.post('/api/v1/auth/token', 'x')).rejects.toThrow()
    expect(seen).toHaveLength(1)
    expect(expired).not.toHaveBeenCalled()
  })
})
