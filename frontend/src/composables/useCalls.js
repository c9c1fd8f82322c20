import { computed, ref, shallowRef, watch } from 'vue'
import { calls } from '../api/calls.js'
import { errorMessage } from '../i18n/errors.js'
import { liveText } from '../i18n/index.js'

export const PAGE_SIZE = 25

// The calls list for a reactive `filters` object ({status, source, since, until, q, sort}):
// cursor pages (a stack of cursors to go back), status counts, and a silent `refresh` that the
// page calls on a timer so the table updates itself without flickering.
export function useCalls(filters, { pageSize = PAGE_SIZE } = {}) {
  const items = shallowRef([])
  const counts = ref({})
  const total = ref(0)
  const nextCursor = ref(null)
  const cursors = ref([null]) // cursors[i] opens page i
  const loading = ref(false)
  const loaded = ref(false)
  const error = liveText()
  let generation = 0

  const page = computed(() => cursors.value.length)
  const hasNext = computed(() => Boolean(nextCursor.value))
  const hasPrev = computed(() => cursors.value.length > 1)

  function query() {
    return {
      status: filters.status || undefined,
      source: filters.source || undefined,
      since: filters.since || undefined,
      until: filters.until || undefined,
      q: (filters.q || '').trim() || undefined,
      sort: filters.sort || undefined,
      limit: pageSize,
      cursor: cursors.value[cursors.value.length - 1] || undefined,
    }
  }

  async function load({ silent = false } = {}) {
    const mine = ++generation
    if (!silent) loading.value = true
    try {
      const body = await calls.list(query())
      if (mine !== generation) return
      items.value = body.items
      counts.value = body.counts || {}
      total.value = body.total ?? body.items.length
      nextCursor.value = body.next_cursor
      error.value = ''
      loaded.value = true
    } catch (e) {
      if (mine !== generation) return
      error.value = () => errorMessage(e)
    } finally {
      if (mine === generation) loading.value = false
    }
  }

  function reset() {
    cursors.value = [null]
    return load()
  }

  function nextPage() {
    if (!nextCursor.value) return Promise.resolve()
    cursors.value = [...cursors.value, nextCursor.value]
    return load()
  }

  function prevPage() {
    if (cursors.value.length <= 1) return Promise.resolve()
    cursors.value = cursors.value.slice(0, -1)
    return load()
  }

  watch(
    () => [filters.status, filters.source, filters.since, filters.until, filters.q, filters.sort],
    () => reset(),
  )

  return {
    items, counts, total, loading, loaded, error, page, hasNext, hasPrev,
    load, reset, nextPage, prevPage, refresh: () => load({ silent: true }),
  }
}
