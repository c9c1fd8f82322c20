import { reactive, ref } from 'vue'
import { calls } from '../api/calls.js'
import { errorMessage } from '../i18n/errors.js'

let nextId = 1

// A queue of recordings to upload, a few at a time, each with its own progress and outcome.
export function useUploads({ concurrency = 2, upload = calls.upload } = {}) {
  const files = ref([])
  let running = 0

  function add(fileList, { externalId = '', metadata = '' } = {}) {
    for (const file of Array.from(fileList || [])) {
      files.value.push(
        reactive({
          id: nextId++,
          file,
          name: file.name,
          size: file.size,
          externalId: fileList.length === 1 ? externalId : '',
          metadata,
          state: 'queued', // queued | uploading | done | error | cancelled
          progress: 0,
          error: null, // () => the reason it failed, in the language of the moment
          call: null,
          controller: null,
        }),
      )
    }
    pump()
  }

  function pump() {
    while (running < concurrency) {
      const item = files.value.find((f) => f.state === 'queued')
      if (!item) return
      running += 1
      start(item).finally(() => {
        running -= 1
        pump()
      })
    }
  }

  async function start(item) {
    item.state = 'uploading'
    item.controller = new AbortController()
    try {
      item.call = await upload(item.file, {
        externalId: item.externalId || undefined,
        metadata: item.metadata || undefined,
        signal: item.controller.signal,
        onProgress: (fraction) => {
          if (fraction !== null) item.progress = Math.min(1, fraction)
        },
      })
      item.progress = 1
      item.state = 'done'
    } catch (e) {
      if (item.state === 'cancelled') return
      item.state = 'error'
      item.error = () => errorMessage(e)
    } finally {
      item.controller = null
    }
  }

  function cancel(item) {
    if (item.state === 'queued' || item.state === 'uploading') {
      item.controller?.abort()
      item.state = 'cancelled'
    }
  }

  function retry(item) {
    if (item.state === 'error' || item.state === 'cancelled') {
      Object.assign(item, { state: 'queued', progress: 0, error: null })
      pump()
    }
  }

  function clearFinished() {
    files.value = files.value.filter((f) => f.state === 'queued' || f.state === 'uploading')
  }

  return { files, add, cancel, retry, clearFinished }
}
