// Small display helpers shared by the pages.

export function formatDate(iso) {
  if (!iso) return '—'
  const d = new Date(iso)
  if (Number.isNaN(d.getTime())) return '—'
  return d.toLocaleString(undefined, {
    year: 'numeric', month: 'short', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit',
  })
}

export function formatTime(iso) {
  if (!iso) return '—'
  const d = new Date(iso)
  return Number.isNaN(d.getTime()) ? '—' : d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' })
}

export function formatHour(iso) {
  const d = new Date(iso)
  return Number.isNaN(d.getTime()) ? '' : d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' })
}

// 75.4 -> "1:15"; 3725 -> "1:02:05"
export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(Number(seconds))) return '—'
  const total = Math.round(Number(seconds))
  const h = Math.floor(total / 3600)
  const m = Math.floor((total % 3600) / 60)
  const s = String(total % 60).padStart(2, '0')
  return h ? `${h}:${String(m).padStart(2, '0')}:${s}` : `${m}:${s}`
}

// Latencies: "850 ms", "4.2 s", "3.5 min", "2.1 h"
export function formatSeconds(seconds) {
  if (seconds === null || seconds === undefined) return '—'
  const v = Number(seconds)
  if (v < 1) return `${Math.round(v * 1000)} ms`
  if (v < 120) return `${v.toFixed(1)} s`
  if (v < 7200) return `${(v / 60).toFixed(1)} min`
  return `${(v / 3600).toFixed(1)} h`
}

export function formatBytes(bytes) {
  if (bytes === null || bytes === undefined) return '—'
  const units = ['B', 'KB', 'MB', 'GB', 'TB']
  let v = Number(bytes)
  let i = 0
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024
    i += 1
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`
}

export function formatNumber(n) {
  return n === null || n === undefined ? '—' : Number(n).toLocaleString()
}

// <input type="datetime-local"> value (local time) -> ISO 8601 with the offset, or ''
export function localInputToIso(value) {
  if (!value) return ''
  const d = new Date(value)
  return Number.isNaN(d.getTime()) ? '' : d.toISOString()
}

export function isoToLocalInput(iso) {
  if (!iso) return ''
  const d = new Date(iso)
  if (Number.isNaN(d.getTime())) return ''
  const pad = (n) => String(n).padStart(2, '0')
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`
}

export const STATUSES = ['received', 'analyzed', 'processing', 'processed', 'delivered', 'failed']

export const STATUS_LABELS = {
  received: 'Received',
  analyzed: 'Analyzed',
  processing: 'AI working',
  processed: 'Processed',
  delivered: 'Delivered',
  failed: 'Failed',
}

export const TERMINAL = new Set(['delivered', 'failed'])

export const STATUS_COLORS = {
  received: '#94a3b8',
  analyzed: '#38bdf8',
  processing: '#8b5cf6',
  processed: '#f59e0b',
  delivered: '#16a34a',
  failed: '#dc2626',
}
