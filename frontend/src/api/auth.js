import {
  createApiKey,
  createToken,
  createUser,
  deleteUser,
  getMe,
  listApiKeys,
  listAudit,
  listUsers,
  logout,
  resetPassword,
  revokeApiKey,
  updateUser,
} from 'virtual:openapi'
import { send } from './request.js'
import { clearSession, session, setIdentity, setTokens } from './session.js'

const data = (response) => response.data

export async function signIn(username, password) {
  const body = new URLSearchParams({ grant_type: 'password', username, password })
  const { data: tokens } = await send(createToken, { body })
  setTokens(tokens, username.trim().toLowerCase())
  try {
    const me = await send(getMe)
    setIdentity(me.data)
  } catch {
    // the token works (we just got it); the name from the form is good enough
  }
  return tokens
}

export async function signOut() {
  const refresh = session.refreshToken
  try {
    if (session.accessToken) {
      await send(logout, { body: new URLSearchParams(refresh ? { refresh_token: refresh } : {}) })
    }
  } catch {
    // signing out locally is what matters; the server session expires anyway
  } finally {
    clearSession()
  }
}

export async function whoAmI() {
  const { data: me } = await send(getMe)
  setIdentity(me)
  return me
}

const user = (id) => ({ user_id: id })

export const users = {
  list: (params) => send(listUsers, { query: params }).then(data),
  create: (body) => send(createUser, { body }).then(data),
  update: (id, body) => send(updateUser, { path: user(id), body }).then(data),
  remove: (id) => send(deleteUser, { path: user(id) }),
  resetPassword: (id, password) => send(resetPassword, { path: user(id), body: { password } }),
}

export const apiKeys = {
  list: (params) => send(listApiKeys, { query: params }).then(data),
  create: (body) => send(createApiKey, { body }).then(data),
  revoke: (id) => send(revokeApiKey, { path: { key_id: id } }),
}

export const audit = {
  list: (params) => send(listAudit, { query: params }).then(data),
}
