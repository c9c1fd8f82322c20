// Every component test runs with the app's i18n, in English unless the test switches, and fails
// when something asked for a message the chosen language does not have.
import { config } from '@vue/test-utils'
import { afterEach, beforeEach, expect } from 'vitest'
import { i18n, setLocale } from './i18n/index.js'

config.global.plugins = [i18n]

const missing = []
const consoleError = console.error
console.error = (...args) => {
  if (String(args[0]).startsWith('[i18n]')) missing.push(args.join(' '))
  else consoleError(...args)
}

beforeEach(() => {
  missing.length = 0
  setLocale('en', { remember: false })
})

afterEach(() => {
  expect(missing, 'messages asked for but not translated').toEqual([])
})
