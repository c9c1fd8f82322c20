import { flushPromises } from '@vue/test-utils'
import { beforeEach, describe, expect, it, vi } from 'vitest'
import { nextTick, reactive } from 'vue'

vi.mock('../api/calls.js', () => ({ calls: { list: vi.fn() } }))
const { calls } = await import('../api/calls.js')
const { useCalls } = await import('./useCalls.js')

describe('useCalls', () => {
  beforeEach(() => calls.list.mockReset())

  it('sends the filters, pages with cursors and goes back', async () => {
    calls.list
      .mockResolvedValueOnce({ items: [{ id: '1' }], next_cursor: 'c2', counts: { failed: 3 }, total: 2 })
      .mockResolvedValueOnce({ items: [{ id: '2' }], next_cursor: null, counts: { failed: 3 }, total: 2 })
      .mockResolvedValueOnce({ items: [{ id: '1' }], next_cursor: 'c2', counts: { failed: 3 }, total: 2 })
    const filters = reactive({ status: 'failed', q: '  alice ', sort: '', source: '', since: '', until: '' })
    const list = useCalls(filters, { pageSize: 1 })
    await list.load()
    expect(calls.list.mock.calls[0][0]).toMatchObject({ status: 'failed', q: 'alice', limit: 1, cursor: undefined })
    expect(list.counts.value.failed).toBe(3)
    await list.nextPage()
    expect(calls.list.mock.calls[1][0].cursor).toBe('c2')
    expect(list.items.value[0].id).toBe('2')
    expect(list.hasNext.value).toBe(false)
    expect(list.page.value).toBe(2)
    await list.prevPage()
    expect(calls.list.mock.calls[2][0].cursor).toBeUndefined()
  })

  it('starts from the first page when a filter changes', async () => {
    calls.list.mockResolvedValue({ items: [], next_cursor: 'next', counts: {}, total: 0 })
    const filters = reactive({ status: '', q: '', sort: '', source: '', since: '', until: '' })
    const list = useCalls(filters)
    await list.load()
    await list.nextPage()
    filters.source = 'pbx'
    await nextTick()
    await flushPromises()
    const last = calls.list.mock.calls.at(-1)[0]
    expect(last).toMatchObject({ source: 'pbx', cursor: undefined })
    expect(list.page.value).toBe(1)
  })

  it('keeps the rows when a silent refresh fails, and reports the error', async () => {
    calls.list.mockResolvedValueOnce({ items: [{ id: 'x' }], next_cursor: null, counts: {}, total: 1 })
      .mockRejectedValueOnce({ message: 'Network Error' })
    const list = useCalls(reactive({}))
    await list.load()
    await list.refresh()
    expect(list.items.value).toHaveLength(1)
    expect(list.error.value).toBe('The server cannot be reached.')
  })
})
