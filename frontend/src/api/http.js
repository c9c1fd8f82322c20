// The one Axios instance of the UI. Every request carries the access token; a 401 is handled
// here and only here: refresh once (shared by all requests waiting on it), retry, and when the
// session cannot be renewed, end it and tell the app (which shows the sign-in page).
import axios from 'axios'
import { createToken, logout, refreshToken } from 'virtual:openapi'
import { clearSession, session, setTokens } from './session.js'

let expiredHandler = () => {}
let refreshing = null

export function onSessionExpired(handler) {
  expiredHandler = handler
}

const ANONYMOUS_PATHS = [createToken.path, refreshToken.path]
const AUTH_PATHS = [...ANONYMOUS_PATHS, logout.path]

export function createHttp(options = {}) {
  const instance = axios.create({ timeout: 30000, ...options })

  instance.interceptors.request.use((config) => {
    const anonymous = ANONYMOUS_PATHS.some((p) => (config.url || '').startsWith(p))
    if (session.accessToken && !anonymous && !config.headers.Authorization) {
      config.headers.Authorization = `Bearer ${session.accessToken}`
    }
    return config
  })

  instance.interceptors.response.use(
    (response) => response,
    async (error) => {
      const config = error.config || {}
      const status = error.response?.status
      const isAuthCall = AUTH_PATHS.some((p) => (config.url || '').startsWith(p))
      if (status !== 401 || isAuthCall || config._retried || !session.refreshToken) {
        if (status === 401 && !isAuthCall) expire()
        throw error
      }
      try {
        await refreshOnce(instance)
      } catch {
        expire()
        throw error
      }
      config._retried = true
      config.headers = { ...config.headers, Authorization: `Bearer ${session.accessToken}` }
      return instance.request(config)
    },
  )
  return instance
}

function refreshOnce(instance) {
  if (!refreshing) {
    const body = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: session.refreshToken })
    refreshing = instance
      .post(refreshToken.path, body)
      .then((r) => setTokens(r.data))
      .finally(() => {
        refreshing = null
      })
  }
  return refreshing
}

function expire() {
  const hadSession = Boolean(session.accessToken)
  clearSession()
  if (hadSession) expiredHandler()
}

export const http = createHttp()
