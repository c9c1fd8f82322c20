// Every request of the API client goes through `send`, with an operation of the API's
// description (`virtual:openapi`, see openapi-plugin.js): its method and path come from the
// document, and a path parameter, query parameter or body field the document does not list
// is refused here, before anything is sent, so a rename in the document fails the UI's tests.
import { http } from './http.js'

function bodyNames(body) {
  if (body instanceof FormData || body instanceof URLSearchParams) return [...new Set(body.keys())]
  return Object.keys(body)
}

function mediaType(body) {
  if (body instanceof FormData) return 'multipart/form-data'
  if (body instanceof URLSearchParams) return 'application/x-www-form-urlencoded'
  return 'application/json'
}

function refuseUnknown(operation, what, names, known) {
  const unknown = names.filter((name) => !known.includes(name))
  if (unknown.length) {
    throw new Error(
      `${operation.method.toUpperCase()} ${operation.path}: ${what} ${unknown.join(', ')} ` +
        `not in the API description (it has: ${known.join(', ') || 'none'})`,
    )
  }
}

// The operation's path with its parameters filled in (each one required, none extra).
export function pathOf(operation, params = {}) {
  refuseUnknown(operation, 'path parameter', Object.keys(params), operation.pathParams)
  return operation.path.replace(/\{([^}]+)\}/g, (_, name) => {
    if (params[name] === undefined || params[name] === null || params[name] === '') {
      throw new Error(`${operation.path}: path parameter ${name} is missing`)
    }
    return encodeURIComponent(params[name])
  })
}

// Send `operation`; resolves with the Axios response.
export function send(operation, { path, query, body, ...config } = {}) {
  const url = pathOf(operation, path)
  if (query) refuseUnknown(operation, 'query parameter', Object.keys(query), operation.query)
  if (body !== undefined) {
    const media = mediaType(body)
    const fields = operation.body[media]
    if (!fields) throw new Error(`${operation.path} takes no ${media} body`)
    refuseUnknown(operation, 'body field', bodyNames(body), fields)
  }
  return http.request({ method: operation.method, url, params: query, data: body, ...config })
}
