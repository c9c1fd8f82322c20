import { flushPromises, mount } from '@vue/test-utils'
import { describe, expect, it, vi } from 'vitest'
import { createMemoryHistory } from 'vue-router'

vi.mock('../api/calls.js', () => ({ stats: { get: vi.fn() } }))
const { stats } = await import('../api/calls.js')
const { setTokens } = await import('../api/session.js')
const { createAppRouter } = await import('../router.js')
const { setLocale } = await import('../i18n/index.js')
const { default: DashboardPage } = await import('./DashboardPage.vue')

const STATS = {
  totals: { received: 1, analyzed: 0, processing: 2, processed: 0, delivered: 10, failed: 3 },
  calls_per_hour: [
    { hour: '2026-01-01T10:00:00+00:00', counts: { delivered: 4, failed: 1 } },
    { hour: '2026-01-01T11:00:00+00:00', counts: { delivered: 6, failed: 2, processing: 2, received: 1 } },
  ],
  latencies: {
    analyze: { count: 10, mean: 0.2, p50: 0.1, p95: 0.4, max: 1 },
    ai: { count: 10, mean: 4, p50: 3.5, p95: 9, max: 12 },
    deliver: { count: 10, mean: 0.3, p50: 0.2, p95: 0.5, max: 1 },
    total: { count: 10, mean: 5, p50: 4, p95: 10, max: 14 },
  },
  audio_minutes: 42.5,
  failures: [{ stage: 'call-ai', reason: 'ai_rejected', count: 3 }],
  dead_letters: { total: 2, by_destination: [{ destination: 'crm', destination_id: 'd1', count: 2 }] },
}

describe('DashboardPage', () => {
  it('shows tiles and charts from the stats', async () => {
    setTokens({ access_token: 'a', refresh_token: 'r', role: 'viewer' }, 'v')
    stats.get.mockResolvedValue(STATS)
    const router = createAppRouter(createMemoryHistory())
    const wrapper = mount(DashboardPage, { global: { plugins: [router] } })
    await flushPromises()
    expect(stats.get).toHaveBeenCalledWith({ hours: 24 })
    expect(wrapper.get('[data-testid=tile-received]').text()).toBe('16')
    expect(wrapper.get('[data-testid=tile-dead]').text()).toBe('2')
    expect(wrapper.findAll('svg rect').length).toBe(6)
    expect(wrapper.text()).toContain('call-ai: AI rejected the recording')
    expect(wrapper.text()).toContain('p95 9.0 sec')
    expect(wrapper.text()).toContain('crm')
  })

  it('speaks Russian, numbers and latencies written the Russian way', async () => {
    setTokens({ access_token: 'a', refresh_token: 'r', role: 'viewer' }, 'v')
    setLocale('ru', { remember: false })
    stats.get.mockResolvedValue(STATS)
    const router = createAppRouter(createMemoryHistory())
    const wrapper = mount(DashboardPage, { global: { plugins: [router] } })
    await flushPromises()
    expect(wrapper.get('h1').text()).toBe('Обзор')
    expect(wrapper.get('[data-testid=tile-minutes]').text()).toBe('42,5')
    expect(wrapper.text()).toContain('получено звонков')
    expect(wrapper.text()).toContain('call-ai: ИИ отклонил запись')
    expect(wrapper.text()).toContain('p95 9,0 с')
    expect(wrapper.findAll('#window option').map((o) => o.text())).toEqual([
      'За последние 6 часов', 'За последние 24 часа', 'За последние 7 дней',
    ])
    expect(wrapper.get('svg').attributes('aria-label')).toBe('Звонки по часам, по текущему статусу: всего 16, 2 столбца')
    // the chart's legend names the statuses in Russian
    expect(wrapper.findAll('.legend li').map((li) => li.text())).toContain('Доставлен')
  })

  it('shows an error with a way to try again', async () => {
    stats.get.mockRejectedValueOnce({ message: 'Network Error' }).mockResolvedValueOnce(STATS)
    const router = createAppRouter(createMemoryHistory())
    const wrapper = mount(DashboardPage, { global: { plugins: [router] } })
    await flushPromises()
    expect(wrapper.get('[role=alert]').text()).toContain('cannot be reached')
    await wrapper.get('[role=alert] button').trigger('click')
    await flushPromises()
    expect(wrapper.find('[role=alert]').exists()).toBe(false)
  })
})
