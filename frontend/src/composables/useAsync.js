import { ref, shallowRef } from 'vue'
import { errorMessage } from '../i18n/errors.js'
import { liveText } from '../i18n/index.js'

// Loading / error / data for one kind of request; `run` keeps only the latest answer.
export function useAsync(fn, { initial = null } = {}) {
  const data = shallowRef(initial)
  const error = liveText()
  const loading = ref(false)
  let generation = 0

  async function run(...args) {
    const mine = ++generation
    loading.value = true
    try {
      const result = await fn(...args)
      if (mine === generation) {
        data.value = result
        error.value = ''
      }
      return result
    } catch (e) {
      if (mine === generation) error.value = () => errorMessage(e)
      return undefined
    } finally {
      if (mine === generation) loading.value = false
    }
  }

  return { data, error, loading, run }
}
