import { onBeforeUnmount, onMounted } from 'vue'

// Call `tick` every `intervalMs` while the page is visible (a hidden tab costs the server
// nothing), and once more as soon as it becomes visible again.
export function usePolling(tick, intervalMs, { immediate = true } = {}) {
  let timer = null
  let stopped = false

  function visible() {
    return typeof document === 'undefined' || document.visibilityState !== 'hidden'
  }

  function schedule() {
    clearTimeout(timer)
    if (stopped) return
    timer = setTimeout(async () => {
      if (visible()) {
        try {
          await tick()
        } catch {
          // the tick shows its own errors
        }
      }
      schedule()
    }, typeof intervalMs === 'function' ? intervalMs() : intervalMs)
  }

  function onVisibility() {
    if (visible() && !stopped) {
      tick()
      schedule()
    }
  }

  onMounted(() => {
    if (immediate) tick()
    schedule()
    document.addEventListener('visibilitychange', onVisibility)
  })
  onBeforeUnmount(() => {
    stopped = true
    clearTimeout(timer)
    document.removeEventListener('visibilitychange', onVisibility)
  })

  return {
    stop() {
      stopped = true
      clearTimeout(timer)
    },
  }
}
