import { mount } from '@vue/test-utils'
import { describe, expect, it } from 'vitest'
import ConfirmButton from './ConfirmButton.vue'

describe('ConfirmButton', () => {
  it('asks before it confirms', async () => {
    const wrapper = mount(ConfirmButton, { props: { label: 'Retry', confirmLabel: 'Yes, retry' }, attachTo: document.body })
    await wrapper.get('button').trigger('click')
    expect(wrapper.emitted('confirm')).toBeUndefined()
    const yes = wrapper.findAll('button').find((b) => b.text() === 'Yes, retry')
    expect(document.activeElement).toBe(yes.element) // keyboard users land on the answer
    await yes.trigger('click')
    expect(wrapper.emitted('confirm')).toHaveLength(1)
    wrapper.unmount()
  })

  it('can be cancelled', async () => {
    const wrapper = mount(ConfirmButton, { props: { label: 'Delete' } })
    await wrapper.get('button').trigger('click')
    await wrapper.findAll('button').find((b) => b.text() === 'Cancel').trigger('click')
    expect(wrapper.emitted('confirm')).toBeUndefined()
    expect(wrapper.get('button').text()).toBe('Delete')
  })
})
