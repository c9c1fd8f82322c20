// The UI's two languages. The language comes from the browser (navigator.languages) until the
// operator picks one in the header; that choice is kept in localStorage. Every visible string
// lives in ./locales/<code>.json under the same keys (locales.spec.js checks both files match).
import { computed, shallowRef } from 'vue'
import { createI18n } from 'vue-i18n'
import en from './locales/en.json'
import ru from './locales/ru.json'

export const LOCALES = ['en', 'ru']
export const DEFAULT_LOCALE = 'en'
const STORAGE_KEY = 'cd.locale'

// vue-i18n picks a plural form by its index in "form | form | form"; Intl.PluralRules knows
// each language's categories. English has two forms, Russian three (1 звонок, 2 звонка,
// 5 звонков); Russian fractions ("other": 1,5 звонка) take the second.
export const PLURAL_FORMS = {
  en: { one: 0, other: 1 },
  ru: { one: 0, few: 1, many: 2, other: 1 },
}

function pluralRule(locale) {
  const rules = new Intl.PluralRules(locale)
  return (choice, choicesLength) => {
    const index = PLURAL_FORMS[locale][rules.select(Math.abs(Number(choice) || 0))] ?? 0
    return Math.min(index, choicesLength - 1)
  }
}

function storedLocale() {
  try {
    return globalThis.localStorage?.getItem(STORAGE_KEY) || null
  } catch {
    return null // storage disabled: the browser's language it is
  }
}

// The stored choice, else the first of the browser's languages we speak, else English.
export function detectLocale({ stored = storedLocale(), languages = globalThis.navigator?.languages } = {}) {
  if (LOCALES.includes(stored)) return stored
  for (const tag of languages || []) {
    const primary = String(tag).toLowerCase().split('-')[0]
    if (LOCALES.includes(primary)) return primary
  }
  return DEFAULT_LOCALE
}

// A key missing from the chosen language is a bug: say so where tests look (the console).
function reportMissing(locale, key) {
  console.error(`[i18n] no "${locale}" translation for "${key}"`)
}

export const i18n = createI18n({
  legacy: false,
  locale: detectLocale(),
  fallbackLocale: DEFAULT_LOCALE,
  messages: { en, ru },
  pluralRules: Object.fromEntries(LOCALES.map((l) => [l, pluralRule(l)])),
  missing: reportMissing,
  missingWarn: false,
  fallbackWarn: false,
})

export const t = (...args) => i18n.global.t(...args)
export const te = (key) => i18n.global.te(key)
export const locale = computed(() => i18n.global.locale.value)

// The locale for Intl: the browser's own tag when it is of the chosen language (en-GB dates for
// an en-GB browser), else the language itself.
export const formatLocale = computed(() => {
  const chosen = i18n.global.locale.value
  const own = (globalThis.navigator?.languages || []).find((tag) => String(tag).toLowerCase().split('-')[0] === chosen)
  return own || chosen
})

export function setLocale(code, { remember = true } = {}) {
  if (!LOCALES.includes(code)) return
  i18n.global.locale.value = code
  applyDocumentLanguage()
  if (remember) {
    try {
      localStorage.setItem(STORAGE_KEY, code)
    } catch {
      // not remembered: the choice still holds until the page is closed
    }
  }
}

export function applyDocumentLanguage() {
  if (typeof document !== 'undefined') document.documentElement.lang = i18n.global.locale.value
}

// Each language's name in itself, for the switcher.
export function languageName(code) {
  return i18n.global.getLocaleMessage(code).app.languageName
}

// A message shown until replaced, and written again when the language changes: assign a
// function that builds it (`notice.value = () => t('…', {…})`), or '' to clear it.
export function liveText() {
  const build = shallowRef(null)
  return computed({
    get: () => (build.value ? build.value() : ''),
    set: (value) => {
      build.value = typeof value === 'function' ? value : value ? () => value : null
    },
  })
}
