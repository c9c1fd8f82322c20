import { mount } from '@vue/test-utils'
import { describe, expect, it } from 'vitest'
import ResultView from './ResultView.vue'

describe('ResultView', () => {
  it('shows the transcript as text and the rest as fields and JSON', () => {
    const wrapper = mount(ResultView, {
      props: { result: { transcript: 'Hello, how can I help?', score: 0.93, language: 'en', nested: { a: 1 } } },
    })
    expect(wrapper.get('[data-testid=result-text]').text()).toBe('Hello, how can I help?')
    expect(wrapper.text()).toContain('Score')
    expect(wrapper.text()).toContain('0.93')
    expect(wrapper.get('pre').text()).toContain('"nested"')
  })

  it('opens the JSON when there is nothing simpler to show', () => {
    const wrapper = mount(ResultView, { props: { result: [1, 2, 3] } })
    expect(wrapper.get('details').attributes('open')).toBeDefined()
  })

  it('says when there is no result', () => {
    expect(mount(ResultView, { props: { result: null } }).text()).toContain('No result yet')
  })
})
