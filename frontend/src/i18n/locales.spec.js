// The two languages stay complete: a key shown in one language has a translation in the other,
// with the same placeholders and the plural forms the language needs, every key the code asks
// for exists, and no template writes visible text past the message files.
import { readFileSync, readdirSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parse } from '@vue/compiler-sfc'
import { describe, expect, it } from 'vitest'
import { LOCALES, PLURAL_FORMS } from './index.js'
import en from './locales/en.json'
import ru from './locales/ru.json'

const MESSAGES = { en, ru }
const SRC = join(dirname(fileURLToPath(import.meta.url)), '..')

function flatten(messages, prefix = '') {
  return Object.entries(messages).flatMap(([key, value]) =>
    value && typeof value === 'object' ? flatten(value, `${prefix}${key}.`) : [[`${prefix}${key}`, value]],
  )
}

const FLAT = Object.fromEntries(LOCALES.map((l) => [l, Object.fromEntries(flatten(MESSAGES[l]))]))

function placeholders(message) {
  return [...new Set([...message.matchAll(/\{(\w+)\}/g)].map((m) => m[1]))].sort()
}

function sourceFiles(dir = SRC) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) return sourceFiles(path)
    return /\.(vue|js)$/.test(entry.name) && !entry.name.endsWith('.spec.js') ? [path] : []
  })
}

describe('the message files', () => {
  it('have the same keys in every language', () => {
    for (const a of LOCALES) {
      for (const b of LOCALES) {
        const untranslated = Object.keys(FLAT[a]).filter((key) => !(key in FLAT[b]))
        expect(untranslated, `shown in "${a}" but not translated to "${b}"`).toEqual([])
      }
    }
  })

  it('hold only non-empty text', () => {
    for (const l of LOCALES) {
      const bad = Object.entries(FLAT[l]).filter(([, v]) => typeof v !== 'string' || !v.trim()).map(([k]) => k)
      expect(bad, `empty or not text in "${l}"`).toEqual([])
    }
  })

  it('use the same placeholders in every language', () => {
    const differ = Object.keys(FLAT.en).filter((key) =>
      LOCALES.some((l) => JSON.stringify(placeholders(FLAT[l][key] || '')) !== JSON.stringify(placeholders(FLAT.en[key]))),
    )
    expect(differ).toEqual([])
  })

  it('give each plural message the forms its language has (en: 2, ru: 3)', () => {
    const wrong = []
    for (const l of LOCALES) {
      const forms = Math.max(...Object.values(PLURAL_FORMS[l])) + 1
      for (const [key, message] of Object.entries(FLAT[l])) {
        const count = message.split('|').length
        const plural = FLAT.en[key]?.includes('|')
        if ((plural && count !== forms) || (!plural && count !== 1)) wrong.push(`${l}: ${key} has ${count}`)
      }
    }
    expect(wrong).toEqual([])
  })

  it('have every key the code asks for by name', () => {
    // $t('a.b'), t('a.b'), countOf('a.b', n), keypath="a.b", route titles.
    const asked = new Map()
    const pattern = /(?:\$t|\bt|countOf)\(\s*'([\w.]+)'|keypath="([\w.]+)"|title: '([\w.]+)'/g
    for (const file of sourceFiles()) {
      for (const m of readFileSync(file, 'utf8').matchAll(pattern)) {
        const key = m[1] || m[2] || m[3]
        if (key.includes('.')) asked.set(key, relative(SRC, file))
      }
    }
    expect(asked.size).toBeGreaterThan(100)
    const missing = [...asked].filter(([key]) => !(key in FLAT.en)).map(([key, file]) => `${file}: ${key}`)
    expect(missing).toEqual([])
  })
})

// Visible attributes whose static value is text a person reads.
const VISIBLE_ATTRIBUTES = new Set([
  'placeholder', 'title', 'alt', 'aria-label', 'aria-description', 'label', 'question', 'confirm-label', 'empty-text',
  'loading-text', 'note', 'value',
])
// Text that reads the same in both languages: a version tag (v2), an example URL or token.
const LANGUAGE_NEUTRAL = /^(v|#|[^\s]*[:/_{][^\s]*)$/
// Strings in template expressions that are message keys or class names, not text.
const NOT_TEXT = /(?:\$t|\bt|countOf|labelOf)\(\s*(['`])[^'`]*\1|(['"`])[\w-]*--[\w-]*(\$\{[^}]*\})?\2/g
const QUOTED = /(['"`])((?:(?!\1).)*\p{L}(?:(?!\1).)*)\1/gu

function hardCoded(source, name) {
  const { descriptor } = parse(source, { filename: name })
  const found = []
  const visit = (node) => {
    if (node.type === 2 && /\p{L}/u.test(node.content) && !LANGUAGE_NEUTRAL.test(node.content.trim())) {
      found.push(`text "${node.content.trim()}"`)
    }
    const expressions = []
    if (node.type === 5) expressions.push(node.content.content)
    for (const prop of node.props || []) {
      if (prop.type === 6 && VISIBLE_ATTRIBUTES.has(prop.name) && prop.value && /\p{L}/u.test(prop.value.content)
        && !LANGUAGE_NEUTRAL.test(prop.value.content)) {
        found.push(`${prop.name}="${prop.value.content}"`)
      }
      if (prop.type === 7 && prop.name === 'bind' && VISIBLE_ATTRIBUTES.has(prop.arg?.content) && prop.exp) {
        expressions.push(prop.exp.content)
      }
    }
    for (const code of expressions) {
      for (const m of code.replace(NOT_TEXT, '').matchAll(QUOTED)) {
        if (!LANGUAGE_NEUTRAL.test(m[2])) found.push(`"${m[2]}" in {{ ${code} }}`)
      }
    }
    for (const child of node.children || []) visit(child)
  }
  if (descriptor.template) visit(descriptor.template.ast)
  return found.map((what) => `${name}: ${what}`)
}

describe('the templates', () => {
  const vueFiles = sourceFiles().filter((f) => f.endsWith('.vue'))

  it('write no visible text of their own (it belongs in the message files)', () => {
    expect(vueFiles.length).toBeGreaterThan(20)
    expect(vueFiles.flatMap((f) => hardCoded(readFileSync(f, 'utf8'), relative(SRC, f)))).toEqual([])
  })

  it('are checked by a test that does find hard-coded text', () => {
    const probe = `<template>
      <button :class="\`btn--\${kind}\`" :title="$t('call.retry')">Sign in</button>
      <input placeholder="Your name" />
      <input placeholder="https://crm.example/hook" />
      <span>v{{ version }}</span>
      <p>{{ busy ? 'Retry' : $t('call.retry') }}</p>
    </template>`
    expect(hardCoded(probe, 'Probe.vue').map((f) => f.slice('Probe.vue: '.length))).toEqual([
      'text "Sign in"',
      'placeholder="Your name"',
      '"Retry" in {{ busy ? \'Retry\' : $t(\'call.retry\') }}',
    ])
  })
})

// Script strings of two words or more that are not shown to anyone, each with why.
const NOT_SHOWN = new Map([
  ['Network Error', "axios's own message, compared to recognise a network failure"],
  ['[i18n] no "${locale}" translation for "${key}"', 'a diagnostic for the console'],
  ['messages asked for but not translated', "the test set-up's assertion message"],
])

// Files whose strings are never shown to an operator, each with why.
const NOT_SHOWN_FILES = new Map([
  ['api/request.js', 'its errors are programming mistakes (a call the API description does not allow), failing the tests'],
])

describe('the scripts', () => {
  it('build no visible sentence of their own', () => {
    const found = []
    for (const file of sourceFiles()) {
      if (NOT_SHOWN_FILES.has(relative(SRC, file))) continue
      let code = readFileSync(file, 'utf8')
      if (file.endsWith('.vue')) {
        const { descriptor } = parse(code, { filename: file })
        code = (descriptor.scriptSetup || descriptor.script)?.content || ''
      }
      code = code.split('\n').filter((line) => !line.trim().startsWith('//')).join('\n')
      for (const m of code.matchAll(/(['"`])((?:(?!\1).)*)\1/g)) {
        // Two words of letters outside any ${…}: a sentence, unless it is a known diagnostic.
        const text = m[2].replace(/\$\{[^}]*\}/g, ' ')
        if (/\p{L}{2,}\s+\p{L}{2,}/u.test(text) && !NOT_SHOWN.has(m[2])) found.push(`${relative(SRC, file)}: ${m[2]}`)
      }
    }
    expect(found).toEqual([])
  })
})
