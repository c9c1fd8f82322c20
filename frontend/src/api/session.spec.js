import { beforeEach, describe, expect, it } from 'vitest'
import { can, clearSession, isSignedIn, reloadSession, session, setTokens } from './session.js'

describe('session', () => {
  beforeEach(() => {
    localStorage.clear()
    clearSession()
  })

  it('survives a reload (localStorage)', () => {
    setTokens({ access_token: 'a', refresh_token: 'r', role: 'viewer' }, 'vera')
    reloadSession()
    expect(isSignedIn()).toBe(true)
    expect(session.username).toBe('vera')
    expect(session.role).toBe('viewer')
  })

  it('starts signed out when the stored session is unreadable', () => {
    localStorage.setItem('cd.session', '{not json')
    reloadSession()
    expect(isSignedIn()).toBe(false)
  })

  it('offers each role only what it may do', () => {
    expect(can('repair', 'operator')).toBe(true)
    expect(can('repair', 'viewer')).toBe(false)
    expect(can('admin', 'operator')).toBe(false)
    expect(can('admin', 'admin')).toBe(true)
    expect(can('stats', 'source')).toBe(false)
    expect(can('upload', 'source')).toBe(true)
    expect(can('upload', 'viewer')).toBe(false)
    expect(can('manageDestinations', 'viewer')).toBe(false)
    expect(can('manageDestinations', 'operator')).toBe(false) // admins add and edit them
    expect(can('operateDestinations', 'operator')).toBe(true) // operators switch and test
    expect(can('operateDestinations', 'viewer')).toBe(false)
    expect(can('read', null)).toBe(false)
  })
})
