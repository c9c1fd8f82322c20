import { mount } from '@vue/test-utils'
import { describe, expect, it } from 'vitest'
import StackedBarChart from './StackedBarChart.vue'

const rows = [
  { label: '10:00', values: { delivered: 4, failed: 1 } },
  { label: '11:00', values: { delivered: 0, failed: 0 } },
  { label: '12:00', values: { delivered: 2, failed: 3 } },
]

describe('StackedBarChart', () => {
  it('draws one segment per non-zero value, heights in proportion', () => {
    const wrapper = mount(StackedBarChart, {
      props: { title: 'Calls', rows, keys: ['delivered', 'failed'], colors: { delivered: 'green', failed: 'red' } },
    })
    const rects = wrapper.findAll('rect')
    expect(rects).toHaveLength(4)
    const heights = rects.map((r) => Number(r.attributes('height')))
    // 4 delivered vs 2 delivered: twice as tall
    expect(heights[0] / heights[2]).toBeCloseTo(2)
    expect(rects[1].attributes('fill')).toBe('red')
    expect(wrapper.find('svg').attributes('aria-label')).toContain('10 in total')
  })

  it('has the numbers as a table too', () => {
    const wrapper = mount(StackedBarChart, { props: { title: 'Calls', rows, keys: ['delivered', 'failed'] } })
    const cells = wrapper.findAll('tbody tr')[2].findAll('td').map((td) => td.text())
    expect(cells).toEqual(['2', '3'])
  })
})
