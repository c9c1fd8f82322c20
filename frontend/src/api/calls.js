import {
  createCall,
  createDestination,
  getCall,
  getCallAudioLink,
  getStats,
  listCalls,
  listDeadLetters,
  listDestinations,
  listSources,
  replayDeadLetters,
  replayDelivery,
  rerunAi,
  retryCall,
  rotateDestinationSecret,
  testDestination,
  updateDestination,
} from 'virtual:openapi'
import { send } from './request.js'

const data = (response) => response.data

// Drop empty filters so the URL carries only what was chosen.
export function cleanParams(params) {
  return Object.fromEntries(
    Object.entries(params || {}).filter(([, v]) => v !== undefined && v !== null && v !== ''),
  )
}

const call = (id) => ({ call_id: id })
const destination = (id) => ({ dest_id: id })

export const calls = {
  list: (params) => send(listCalls, { query: cleanParams(params) }).then(data),
  get: (id) => send(getCall, { path: call(id) }).then(data),
  audioLink: (id) => send(getCallAudioLink, { path: call(id) }).then(data),
  retry: (id) => send(retryCall, { path: call(id) }).then(data),
  rerunAi: (id) => send(rerunAi, { path: call(id) }).then(data),
  replayDelivery: (webhookId) => send(replayDelivery, { path: { delivery_id: webhookId } }).then(data),
  sources: () => send(listSources).then(data),
  upload(file, { externalId, metadata, onProgress, signal } = {}) {
    const form = new FormData()
    if (externalId) form.append('external_id', externalId)
    if (metadata) form.append('metadata', metadata)
    form.append('file', file, file.name)
    return send(createCall, {
      body: form,
      signal,
      timeout: 0, // large recordings take their time; progress shows it is alive
      onUploadProgress: (event) => {
        if (onProgress) onProgress(event.total ? event.loaded / event.total : null, event)
      },
    }).then(data)
  },
}

export const destinations = {
  list: () => send(listDestinations).then(data),
  create: (body) => send(createDestination, { body }).then(data),
  update: (id, body) => send(updateDestination, { path: destination(id), body }).then(data),
  rotate: (id, body) => send(rotateDestinationSecret, { path: destination(id), body }).then(data),
  test: (id) => send(testDestination, { path: destination(id) }).then(data),
}

export const deadLetters = {
  list: (params) => send(listDeadLetters, { query: cleanParams(params) }).then(data),
  replay: (body) => send(replayDeadLetters, { body: cleanParams(body) }).then(data),
}

export const stats = {
  get: (params) => send(getStats, { query: cleanParams(params) }).then(data),
}
