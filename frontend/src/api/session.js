// The signed-in session: tokens and who we are, kept in localStorage so a reload keeps it.
import { reactive, readonly } from 'vue'

const STORAGE_KEY = 'cd.session'

const state = reactive({
  accessToken: null,
  refreshToken: null,
  username: null,
  role: null,
})

function load(storage) {
  try {
    const saved = JSON.parse(storage.getItem(STORAGE_KEY) || 'null')
    if (saved && typeof saved.accessToken === 'string' && typeof saved.refreshToken === 'string') {
      Object.assign(state, {
        accessToken: saved.accessToken,
        refreshToken: saved.refreshToken,
        username: typeof saved.username === 'string' ? saved.username : null,
        role: typeof saved.role === 'string' ? saved.role : null,
      })
    }
  } catch {
    storage.removeItem(STORAGE_KEY) // unreadable: start signed out
  }
}

function persist() {
  if (state.accessToken) {
    localStorage.setItem(STORAGE_KEY, JSON.stringify(state))
  } else {
    localStorage.removeItem(STORAGE_KEY)
  }
}

load(globalThis.localStorage)

export const session = readonly(state)

export function isSignedIn() {
  return Boolean(state.accessToken)
}

export function setTokens({ access_token, refresh_token, role }, username) {
  state.accessToken = access_token
  if (refresh_token) state.refreshToken = refresh_token
  if (role) state.role = role
  if (username) state.username = username
  persist()
}

export function setIdentity({ username, role }) {
  state.username = username
  state.role = role
  persist()
}

export function clearSession() {
  state.accessToken = null
  state.refreshToken = null
  state.username = null
  state.role = null
  persist()
}

// Read the stored session again, as a page reload does.
export function reloadSession() {
  Object.assign(state, { accessToken: null, refreshToken: null, username: null, role: null })
  load(globalThis.localStorage)
}

// What each role may do (SPEC 3.6): the UI offers only what the role allows.
const CAPABILITIES = {
  // manageDestinations: add, edit, rotate (admins: SPEC 3.4); operateDestinations: switch on
  // and off, send a test event.
  admin: ['read', 'stats', 'upload', 'repair', 'destinations', 'manageDestinations', 'operateDestinations', 'deadLetters', 'admin'],
  operator: ['read', 'stats', 'upload', 'repair', 'destinations', 'operateDestinations', 'deadLetters'],
  viewer: ['read', 'stats', 'destinations', 'deadLetters'],
  source: ['read', 'upload'],
}

export function can(capability, role = state.role) {
  return Boolean(role && CAPABILITIES[role]?.includes(capability))
}
