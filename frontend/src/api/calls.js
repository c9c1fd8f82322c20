import { http } from './http.js'

const API = '/api/v1'

// Drop empty filters so the URL carries only what was chosen.
export function cleanParams(params) {
  return Object.fromEntries(
    Object.entries(params || {}).filter(([, v]) => v !== undefined && v !== null && v !== ''),
  )
}

export const calls = {
  list: (params) => http.get(`${API}/calls`, { params: cleanParams(params) }).then((r) => r.data),
  get: (id) => http.get(`${API}/calls/${encodeURIComponent(id)}`).then((r) => r.data),
  audioLink: (id) => http.get(`${API}/calls/${encodeURIComponent(id)}/audio-link`).then((r) => r.data),
  retry: (id) => http.post(`${API}/calls/${encodeURIComponent(id)}/retry`).then((r) => r.data),
  rerunAi: (id) => http.post(`${API}/calls/${encodeURIComponent(id)}/rerun-ai`).then((r) => r.data),
  replayDelivery: (webhookId) =>
    http.post(`${API}/deliveries/${encodeURIComponent(webhookId)}/replay`).then((r) => r.data),
  sources: () => http.get(`${API}/sources`).then((r) => r.data),
  upload(file, { externalId, metadata, onProgress, signal } = {}) {
    const form = new FormData()
    if (externalId) form.append('external_id', externalId)
    if (metadata) form.append('metadata', metadata)
    form.append('file', file, file.name)
    return http
      .post(`${API}/calls`, form, {
        signal,
        timeout: 0, // large recordings take their time; progress shows it is alive
        onUploadProgress: (event) => {
          if (onProgress) onProgress(event.total ? event.loaded / event.total : null, event)
        },
      })
      .then((r) => r.data)
  },
}

export const destinations = {
  list: () => http.get(`${API}/destinations`).then((r) => r.data),
  create: (body) => http.post(`${API}/destinations`, body).then((r) => r.data),
  update: (id, body) => http.patch(`${API}/destinations/${id}`, body).then((r) => r.data),
  rotate: (id, body) => http.post(`${API}/destinations/${id}/rotate-secret`, body).then((r) => r.data),
  test: (id) => http.post(`${API}/destinations/${id}/test`).then((r) => r.data),
}

export const deadLetters = {
  list: (params) => http.get(`${API}/dead-letters`, { params: cleanParams(params) }).then((r) => r.data),
  replay: (body) => http.post(`${API}/dead-letters/replay`, cleanParams(body)).then((r) => r.data),
}

export const stats = {
  get: (params) => http.get(`${API}/stats`, { params: cleanParams(params) }).then((r) => r.data),
}
