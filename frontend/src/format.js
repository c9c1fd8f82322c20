// Display helpers shared by the pages, formatted with Intl for the chosen language. Reading the
// language here makes every template and computed that formats something follow a switch.
import { formatLocale, t, te as hasKey } from './i18n/index.js'

const formatters = new Map()

function intl(Kind, options) {
  const key = `${Kind.name}|${formatLocale.value}|${JSON.stringify(options)}`
  let formatter = formatters.get(key)
  if (!formatter) {
    formatter = new Kind(formatLocale.value, options)
    formatters.set(key, formatter)
  }
  return formatter
}

function validDate(iso) {
  if (!iso) return null
  const d = new Date(iso)
  return Number.isNaN(d.getTime()) ? null : d
}

export function formatDate(iso) {
  const d = validDate(iso)
  return d
    ? intl(Intl.DateTimeFormat, { year: 'numeric', month: 'short', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit' }).format(d)
    : '—'
}

export function formatTime(iso) {
  const d = validDate(iso)
  return d ? intl(Intl.DateTimeFormat, { hour: '2-digit', minute: '2-digit', second: '2-digit' }).format(d) : '—'
}

export function formatHour(iso) {
  const d = validDate(iso)
  return d ? intl(Intl.DateTimeFormat, { hour: '2-digit', minute: '2-digit' }).format(d) : ''
}

export function formatDay(iso) {
  const d = validDate(iso)
  return d ? intl(Intl.DateTimeFormat, { day: '2-digit', month: 'short' }).format(d) : ''
}

export function formatDayHour(iso) {
  const d = validDate(iso)
  return d ? intl(Intl.DateTimeFormat, { day: '2-digit', month: 'short', hour: '2-digit', minute: '2-digit' }).format(d) : ''
}

// A recording's length as a clock: 75.4 -> "1:15"; 3725 -> "1:02:05" (the same in both languages)
export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(Number(seconds))) return '—'
  const total = Math.round(Number(seconds))
  const h = Math.floor(total / 3600)
  const m = Math.floor((total % 3600) / 60)
  const s = String(total % 60).padStart(2, '0')
  return h ? `${h}:${String(m).padStart(2, '0')}:${s}` : `${m}:${s}`
}

function unit(value, name, digits) {
  return intl(Intl.NumberFormat, {
    style: 'unit', unit: name, unitDisplay: 'short', minimumFractionDigits: digits, maximumFractionDigits: digits,
  }).format(value)
}

// Latencies: "850 ms", "4.2 sec", "3.5 min", "2.1 hr" (ru: "850 мс", "4,2 с", "3,5 мин", "2,1 ч")
export function formatSeconds(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(Number(seconds))) return '—'
  const v = Number(seconds)
  if (v < 1) return unit(Math.round(v * 1000), 'millisecond', 0)
  if (v < 120) return unit(v, 'second', 1)
  if (v < 7200) return unit(v / 60, 'minute', 1)
  return unit(v / 3600, 'hour', 1)
}

// Sizes in steps of 1000, as Intl's units mean them: "512 byte", "1.5 kB", "2.1 MB"
// (ru: "512 Б", "1,5 кБ", "2,1 МБ")
const SIZE_UNITS = ['byte', 'kilobyte', 'megabyte', 'gigabyte', 'terabyte']
export function formatBytes(bytes) {
  if (bytes === null || bytes === undefined || Number.isNaN(Number(bytes))) return '—'
  let v = Number(bytes)
  let i = 0
  while (v >= 1000 && i < SIZE_UNITS.length - 1) {
    v /= 1000
    i += 1
  }
  return unit(v, SIZE_UNITS[i], i === 0 ? 0 : 1)
}

export function formatNumber(n, options = {}) {
  return n === null || n === undefined || Number.isNaN(Number(n)) ? '—' : intl(Intl.NumberFormat, options).format(Number(n))
}

// A count in words, in the plural form its number takes ("1 звонок", "5 звонков"), the number
// written for the chosen language.
export function countOf(key, n) {
  return t(key, { n: formatNumber(n) }, Math.abs(Number(n)) || 0)
}

export function formatPercent(fraction) {
  return intl(Intl.NumberFormat, { style: 'percent', maximumFractionDigits: 0 }).format(Number(fraction) || 0)
}

export function formatBitrate(bitsPerSecond) {
  return bitsPerSecond ? unit(Math.round(bitsPerSecond / 1000), 'kilobit-per-second', 0) : '—'
}

// "a, b and c" in the chosen language
export function formatList(items) {
  return intl(Intl.ListFormat, { style: 'long', type: 'conjunction' }).format(items)
}

// <input type="datetime-local"> value (local time) -> ISO 8601 with the offset, or ''
export function localInputToIso(value) {
  if (!value) return ''
  const d = new Date(value)
  return Number.isNaN(d.getTime()) ? '' : d.toISOString()
}

export function isoToLocalInput(iso) {
  const d = validDate(iso)
  if (!d) return ''
  const pad = (n) => String(n).padStart(2, '0')
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`
}

export const STATUSES = ['received', 'analyzed', 'processing', 'processed', 'delivered', 'failed']

export function statusLabel(status) {
  return labelOf('status', status)
}

// A translated label for a value the server sends (a status, a stage's event, a failure
// reason), or the value itself, readable, when this UI does not know it yet.
export function labelOf(group, value) {
  const key = `${group}.${value}`
  return value && typeof value === 'string' && hasKey(key) ? t(key) : String(value ?? '').replace(/_/g, ' ')
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
