// The UI's API client against the API's description (shared/call_downloader/api/openapi.yaml):
// every client function sends a documented operation with documented parameters and fields,
// and `send` refuses anything the document does not list, so a path or field renamed in the
// document fails here (an operation renamed or removed fails the build: virtual:openapi).
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import * as documented from 'virtual:openapi'
import { apiKeys, audit, signIn, signOut, users, whoAmI } from './auth.js'
import { calls, deadLetters, destinations, stats } from './calls.js'
import { http } from './http.js'
import { pathOf, send } from './request.js'
import { clearSession, setTokens } from './session.js'

const ID = '4f1c0d9e-0000-4000-8000-000000000001'

// Every function of the client, called the way the UI calls it.
const CLIENT = {
  'calls.list': () => calls.list({ status: 'failed', q: 'x', source: '', limit: 50, cursor: 'c' }),
  'calls.get': () => calls.get(ID),
  'calls.audioLink': () => calls.audioLink(ID),
  'calls.retry': () => calls.retry(ID),
  'calls.rerunAi': () => calls.rerunAi(ID),
  'calls.replayDelivery': () => calls.replayDelivery('msg_1'),
  'calls.sources': () => calls.sources(),
  'calls.upload': () =>
    calls.upload(new File(['RIFF'], 'a.wav'), { externalId: 'e-1', metadata: '{"a":1}' }),
  'destinations.list': () => destinations.list(),
  'destinations.create': () => destinations.create({ name: 'crm', url: 'https://crm.example/h', secret: undefined }),
  'destinations.update': () => destinations.update(ID, { name: 'crm', url: 'https://crm.example/h', enabled: false }),
  'destinations.rotate': () => destinations.rotate(ID, { overlap_seconds: 3600 }),
  'destinations.test': () => destinations.test(ID),
  'deadLetters.list': () => deadLetters.list({ destination_id: ID, since: '2026-01-01', until: '', limit: 50 }),
  'deadLetters.replay': () => deadLetters.replay({ destination_id: ID, since: '2026-01-01', until: '' }),
  'stats.get': () => stats.get({ hours: 24 }),
  signIn: () => signIn('Olga', 'secret-password'),
  signOut: () => signOut(),
  whoAmI: () => whoAmI(),
  'users.list': () => users.list({ limit: 200 }),
  'users.create': () => users.create({ username: 'olga', role: 'operator', password: 'p'.repeat(12) }),
  'users.update': () => users.update(ID, { role: 'viewer', active: false }),
  'users.remove': () => users.remove(ID),
  'users.resetPassword': () => users.resetPassword(ID, 'p'.repeat(12)),
  'apiKeys.list': () => apiKeys.list({ user_id: ID }),
  'apiKeys.create': () => apiKeys.create({ name: 'PBX', user_id: ID }),
  'apiKeys.revoke': () => apiKeys.revoke(ID),
  'audit.list': () => audit.list({ limit: 50, cursor: undefined, action: 'auth.', actor: 'olga', since: '2026-01-01', until: undefined }),
}

// The document's operations: (method, URL) -> the operation it matches.
const OPERATIONS = Object.values(documented)
function operationOf(method, url) {
  return OPERATIONS.find(
    (op) =>
      op.method === method &&
      new RegExp(`^${op.path.replace(/\{[^}]+\}/g, '[^/]+')}$`).test(url),
  )
}

function names(data) {
  if (data === undefined || data === null) return []
  if (data instanceof FormData || data instanceof URLSearchParams) return [...new Set(data.keys())]
  if (typeof data === 'string') {
    // Axios has serialized it already: JSON, or a URL-encoded form.
    return data.startsWith('{') ? Object.keys(JSON.parse(data)) : [...new URLSearchParams(data).keys()]
  }
  return Object.keys(data)
}

describe('the API client', () => {
  let sent
  let adapter
  beforeEach(() => {
    sent = []
    adapter = http.defaults.adapter
    http.defaults.adapter = async (config) => {
      sent.push(config)
      return { data: { items: [], access_token: 'a', refresh_token: 'r', role: 'admin', username: 'olga' }, status: 200, statusText: 'OK', headers: {}, config, request: {} }
    }
    setTokens({ access_token: 'a', refresh_token: 'r', role: 'admin' }, 'olga')
  })
  afterEach(() => {
    http.defaults.adapter = adapter
    clearSession()
  })

  it.each(Object.entries(CLIENT))('%s sends a documented operation', async (_, run) => {
    await run()
    expect(sent.length).toBeGreaterThan(0)
    for (const config of sent) {
      const method = config.method.toLowerCase()
      const url = config.url.split('?')[0]
      const op = operationOf(method, url)
      expect(op, `${method.toUpperCase()} ${url} is not in openapi.yaml`).toBeTruthy()
      for (const name of Object.keys(config.params || {})) expect(op.query).toContain(name)
      const fields = names(config.data)
      if (fields.length) {
        const media = Object.keys(op.body)
        const documentedFields = media.flatMap((m) => op.body[m])
        for (const field of fields) expect(documentedFields).toContain(field)
      }
    }
  })

  it('uses only operations it can reach: each import is sent by a client function', async () => {
    for (const run of Object.values(CLIENT)) await run()
    const used = new Set(sent.map((c) => operationOf(c.method.toLowerCase(), c.url.split('?')[0])))
    const clientModules = import.meta.glob(['./*.js', '!./*.spec.js'], { query: '?raw', import: 'default', eager: true })
    const imported = new Set()
    for (const source of Object.values(clientModules)) {
      const block = source.match(/import \{([^}]*)\} from 'virtual:openapi'/)
      if (block) block[1].split(',').map((n) => n.trim()).filter(Boolean).forEach((n) => imported.add(n))
    }
    for (const name of imported) {
      if (name === 'refreshToken') continue // sent by http.js's refresh (http.spec.js)
      expect(used.has(documented[name]), `${name} is imported but no client function sends it`).toBe(true)
    }
  })
})

describe('send', () => {
  it('refuses a body field, query parameter or path parameter the document does not list', () => {
    const renamed = { ...documented.createDestination, body: { 'application/json': ['title', 'url'] } }
    expect(() => send(renamed, { body: { name: 'crm', url: 'https://x' } })).toThrow(/body field name/)
    expect(() => send(documented.listCalls, { query: { page: 2 } })).toThrow(/query parameter page/)
    expect(() => pathOf(documented.getCall, { id: ID })).toThrow(/path parameter id/)
    expect(() => pathOf(documented.getCall, {})).toThrow(/call_id is missing/)
    expect(() => send(documented.listCalls, { body: new FormData() })).toThrow(/takes no/)
  })

  it('fills the path from the document, encoded', () => {
    expect(pathOf(documented.getCall, { call_id: 'a/b' })).toBe('/api/v1/calls/a%2Fb')
  })
})

describe('what the session reads from answers', () => {
  it('is documented', () => {
    for (const op of [documented.createToken, documented.refreshToken]) {
      expect(op.response).toEqual(expect.arrayContaining(['access_token', 'refresh_token', 'role']))
    }
    expect(documented.getMe.response).toEqual(expect.arrayContaining(['username', 'role']))
    expect(documented.getCallAudioLink.response).toEqual(expect.arrayContaining(['url', 'expires_at']))
  })
})
