import { describe, expect, it } from 'vitest'
import { nextTick } from 'vue'
import { useUploads } from './useUploads.js'

function file(name, size = 10) {
  return new File([new Uint8Array(size)], name, { type: 'audio/mpeg' })
}

// An upload function the test drives by hand: progress, then success or failure.
function manualUpload() {
  const pending = {}
  const upload = (f, { onProgress, externalId }) =>
    new Promise((resolve, reject) => {
      pending[f.name] = { onProgress, resolve, reject, externalId }
    })
  return { upload, pending }
}

describe('useUploads', () => {
  it('uploads two at a time, each with its own progress and outcome', async () => {
    const { upload, pending } = manualUpload()
    const { files, add } = useUploads({ concurrency: 2, upload })
    add([file('a.mp3'), file('b.wav'), file('c.ogg')])
    await nextTick()
    expect(files.value.map((f) => f.state)).toEqual(['uploading', 'uploading', 'queued'])
    pending['a.mp3'].onProgress(0.25)
    pending['b.wav'].onProgress(0.5)
    expect(files.value.map((f) => f.progress)).toEqual([0.25, 0.5, 0])
    pending['a.mp3'].resolve({ id: 'call-a', status: 'received' })
    await new Promise((r) => setTimeout(r, 0))
    expect(files.value[0].state).toBe('done')
    expect(files.value[0].call.id).toBe('call-a')
    expect(files.value[2].state).toBe('uploading') // the queue moved on
    pending['b.wav'].reject({ response: { status: 415, data: { error: { code: 'unsupported_media_type', message: 'not a supported audio format' } } } })
    await new Promise((r) => setTimeout(r, 0))
    expect(files.value[1].state).toBe('error')
    expect(files.value[1].error()).toBe('This is not a supported audio format: not a supported audio format')
  })

  it('uses the external id only for a single file', async () => {
    const { upload, pending } = manualUpload()
    const one = useUploads({ upload })
    one.add([file('x.mp3')], { externalId: 'EXT-1' })
    await nextTick()
    expect(pending['x.mp3'].externalId).toBe('EXT-1')
    const many = useUploads({ upload })
    many.add([file('y.mp3'), file('z.mp3')], { externalId: 'EXT-2' })
    await nextTick()
    expect(pending['y.mp3'].externalId).toBeUndefined()
  })
})
