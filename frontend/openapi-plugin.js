// The API client's operations come from the API's description, the one place where routes are
// written down (shared/call_downloader/api/openapi.yaml):
//
//   import { getCall } from 'virtual:openapi'
//   // { method: 'get', path: '/api/v1/calls/{call_id}', pathParams: ['call_id'], query: [],
//   //   body: {}, response: ['id', 'external_id', ...] }
//
// One named export per operationId, so an operation renamed or removed in the document fails
// the build (and vitest) wherever the UI still imports it; `send` (src/api/request.js) refuses
// path parameters, query parameters and body fields the document does not list.
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { parse } from 'yaml'

export const DOCUMENT = fileURLToPath(
  new URL('../shared/call_downloader/api/openapi.yaml', import.meta.url),
)
const ID = 'virtual:openapi'
const RESOLVED = `\0${ID}`
const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace']

function resolver(document) {
  const deref = (node) => {
    if (node && typeof node.$ref === 'string' && node.$ref.startsWith('#/')) {
      const target = node.$ref
        .slice(2)
        .split('/')
        .reduce((at, key) => at?.[key.replaceAll('~1', '/').replaceAll('~0', '~')], document)
      if (target === undefined) throw new Error(`openapi.yaml: unresolved ${node.$ref}`)
      return deref(target)
    }
    return node
  }
  return deref
}

// The property names a schema (or any of its allOf/anyOf/oneOf branches) may have.
function fieldsOf(schema, deref) {
  const node = deref(schema)
  if (!node || typeof node !== 'object') return []
  const names = new Set(Object.keys(node.properties || {}))
  for (const keyword of ['allOf', 'anyOf', 'oneOf']) {
    for (const branch of node[keyword] || []) fieldsOf(branch, deref).forEach((n) => names.add(n))
  }
  return [...names].sort()
}

export function operations(document) {
  const deref = resolver(document)
  const found = {}
  for (const [path, item] of Object.entries(document.paths)) {
    for (const method of METHODS) {
      const op = item[method]
      if (!op) continue
      if (!/^[A-Za-z_$][\w$]*$/.test(op.operationId || '')) {
        throw new Error(`openapi.yaml: ${method.toUpperCase()} ${path} needs an operationId`)
      }
      const params = [...(item.parameters || []), ...(op.parameters || [])].map(deref)
      const named = (where) => params.filter((p) => p.in === where).map((p) => p.name).sort()
      const body = {}
      for (const [media, content] of Object.entries(deref(op.requestBody)?.content || {})) {
        body[media] = fieldsOf(content.schema, deref)
      }
      const ok = Object.entries(op.responses || {}).find(([status]) => /^2/.test(status))
      const answer = ok && deref(ok[1]).content?.['application/json']
      found[op.operationId] = {
        method,
        path,
        pathParams: named('path'),
        query: named('query'),
        body,
        response: answer ? fieldsOf(answer.schema, deref) : [],
      }
    }
  }
  return found
}

export function loadOperations() {
  return operations(parse(readFileSync(DOCUMENT, 'utf8')))
}

export default function openapi() {
  return {
    name: 'call-downloader-openapi',
    resolveId: {
      filter: { id: new RegExp(`^${ID}$`) },
      handler: () => RESOLVED,
    },
    load: {
      filter: { id: new RegExp(`^${RESOLVED}$`) },
      handler() {
        this.addWatchFile(DOCUMENT)
        return Object.entries(loadOperations())
          .map(([name, op]) => `export const ${name} = Object.freeze(${JSON.stringify(op)})`)
          .join('\n')
      },
    },
  }
}
