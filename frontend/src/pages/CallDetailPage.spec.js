import { flushPromises, mount } from '@vue/test-utils'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { createMemoryHistory } from 'vue-router'

vi.mock('../api/calls.js', () => ({
  calls: { get: vi.fn(), retry: vi.fn(), rerunAi: vi.fn(), replayDelivery: vi.fn(), audioLink: vi.fn() },
}))
const { calls } = await import('../api/calls.js')
const { setTokens, clearSession } = await import('../api/session.js')
const { createAppRouter } = await import('../router.js')
const { default: CallDetailPage } = await import('./CallDetailPage.vue')

const FAILED = {
  id: '4f1c0d9e-0000-4000-8000-000000000001',
  external_id: 'CALL-7',
  status: 'failed',
  error: { stage: 'call-ai', reason: 'ai_unavailable', message: 'HTTP 500 five times' },
  analyzed_at: '2026-01-01T10:00:01Z',
  received_at: '2026-01-01T10:00:00Z',
  result: null,
  deliveries: [
    { webhook_id: 'msg_1', destination: 'crm', status: 'dead', attempts: 5, result_version: 1, last_status_code: 503 },
  ],
  attempts: [{ webhook_id: 'msg_1', destination: 'crm', number: 1, at: '2026-01-01T10:00:05Z', status_code: 503, latency_ms: 12 }],
  timeline: [
    { at: '2026-01-01T10:00:00Z', stage: 'ingest', event: 'received', detail: {} },
    { at: '2026-01-01T10:00:03Z', stage: 'call-ai', event: 'failed', detail: { reason: 'ai_unavailable' } },
  ],
}

async function mountAs(role) {
  setTokens({ access_token: 'a', refresh_token: 'r', role }, role)
  calls.get.mockResolvedValue(structuredClone(FAILED))
  calls.audioLink.mockResolvedValue({ url: '/x?access=t', expires_at: new Date(Date.now() + 3600e3).toISOString() })
  const router = createAppRouter(createMemoryHistory())
  router.push(`/calls/${FAILED.id}`)
  await router.isReady()
  const wrapper = mount(CallDetailPage, { props: { id: FAILED.id }, global: { plugins: [router] } })
  await flushPromises()
  return wrapper
}

const button = (wrapper, text) => wrapper.findAll('button').find((b) => b.text().startsWith(text))

describe('CallDetailPage', () => {
  beforeEach(() => {
    localStorage.clear()
    clearSession()
    Object.values(calls).forEach((fn) => fn.mockReset())
  })
  afterEach(() => clearSession())

  it('shows the failure, the timeline and the attempts', async () => {
    const wrapper = await mountAs('viewer')
    expect(wrapper.text()).toContain('Failed at call-ai')
    expect(wrapper.text()).toContain('AI unavailable')
    expect(wrapper.findAll('.timeline__item')).toHaveLength(2)
    expect(wrapper.get('[data-testid=attempts]').text()).toContain('HTTP 503')
  })

  it('offers no repair to a viewer', async () => {
    const wrapper = await mountAs('viewer')
    expect(button(wrapper, 'Retry')).toBeUndefined()
    expect(button(wrapper, 'Re-run AI')).toBeUndefined()
    expect(button(wrapper, 'Replay')).toBeUndefined()
    expect(wrapper.text()).toContain('An operator can retry this call')
  })

  it('lets an operator retry from the failed stage', async () => {
    const wrapper = await mountAs('operator')
    calls.retry.mockResolvedValue({ ...FAILED, status: 'analyzed', error: null })
    calls.get.mockResolvedValue({ ...FAILED, status: 'analyzed', error: null })
    await button(wrapper, 'Retry from call-ai').trigger('click')
    await button(wrapper, 'Retry').trigger('click') // the confirmation
    await flushPromises()
    expect(calls.retry).toHaveBeenCalledWith(FAILED.id)
    expect(wrapper.text()).toContain('Retry started from call-ai')
    expect(wrapper.get('[data-testid=call-status]').text()).toBe('Analyzed')
  })

  it('shows a refused repair as an error', async () => {
    const wrapper = await mountAs('admin')
    calls.replayDelivery.mockRejectedValue({ response: { status: 409, data: { error: { code: 'delivery_pending', message: 'this delivery is still being attempted' } } } })
    await button(wrapper, 'Replay').trigger('click')
    await button(wrapper, 'Replay').trigger('click')
    await flushPromises()
    expect(wrapper.get('[role=alert].state--error').text()).toContain('still being attempted')
  })
})
