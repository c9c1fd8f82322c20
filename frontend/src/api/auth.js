import { http } from './http.js'
import { clearSession, session, setIdentity, setTokens } from './session.js'

const AUTH = '/api/v1/auth'

export async function signIn(username, password) {
  const body = new URLSearchParams({ grant_type: 'password', username, password })
  const { data } = await http.post(`${AUTH}/token`, body)
  setTokens(data, username.trim().toLowerCase())
  try {
    const me = await http.get(`${AUTH}/me`)
    setIdentity(me.data)
  } catch {
    // the token works (we just got it); the name from the form is good enough
  }
  return data
}

export async function signOut() {
  const refresh = session.refreshToken
  try {
    if (session.accessToken) {
      await http.post(`${AUTH}/logout`, new URLSearchParams(refresh ? { refresh_token: refresh } : {}))
    }
  } catch {
    // signing out locally is what matters; the server session expires anyway
  } finally {
    clearSession()
  }
}

export async function whoAmI() {
  const { data } = await http.get(`${AUTH}/me`)
  setIdentity(data)
  return data
}

export const users = {
  list: (params) => http.get(`${AUTH}/users`, { params }).then((r) => r.data),
  create: (body) => http.post(`${AUTH}/users`, body).then((r) => r.data),
  update: (id, body) => http.patch(`${AUTH}/users/${id}`, body).then((r) => r.data),
  remove: (id) => http.delete(`${AUTH}/users/${id}`),
  resetPassword: (id, password) => http.post(`${AUTH}/users/${id}/password`, { password }),
}

export const apiKeys = {
  list: (params) => http.get(`${AUTH}/api-keys`, { params }).then((r) => r.data),
  create: (body) => http.post(`${AUTH}/api-keys`, body).then((r) => r.data),
  revoke: (id) => http.delete(`${AUTH}/api-keys/${id}`),
}

export const audit = {
  list: (params) => http.get(`${AUTH}/audit`, { params }).then((r) => r.data),
}
