import { mount } from '@vue/test-utils'
import { describe, expect, it } from 'vitest'
import TimelineList from './TimelineList.vue'

describe('TimelineList', () => {
  it('lists events in order with the time since the previous one', () => {
    const wrapper = mount(TimelineList, {
      props: {
        entries: [
          { at: '2026-01-01T10:00:00Z', stage: 'ingest', event: 'received', detail: { size_bytes: 10 } },
          { at: '2026-01-01T10:00:02.5Z', stage: 'call-ai', event: 'ai_answered', detail: { status_code: null } },
          { at: '2026-01-01T10:03:02.5Z', stage: 'deliver', event: 'failed', detail: { reason: 'gone' } },
        ],
      },
    })
    const items = wrapper.findAll('li')
    expect(items).toHaveLength(3)
    expect(items[1].get('.timeline__delta').text()).toBe('+2.5 sec')
    expect(items[2].get('.timeline__delta').text()).toBe('+3.0 min')
    expect(items[1].get('.timeline__event').text()).toBe('AI answered')
    expect(items[0].text()).toContain('size: 10 byte')
    expect(items[1].find('.timeline__detail').exists()).toBe(false) // nothing but nulls
    expect(items[2].classes()).toContain('timeline__item--failed')
  })

  it('says when nothing happened yet', () => {
    expect(mount(TimelineList, { props: { entries: [] } }).text()).toContain('No events yet')
  })
})
