// The API reference at /docs: Swagger UI (swagger-ui-dist, bundled by Vite, so nothing is
// fetched from a CDN) rendering the document the server itself serves.
import 'swagger-ui-dist/swagger-ui.css'
import SwaggerUIBundle from 'swagger-ui-dist/swagger-ui-bundle.js'
import { getOpenApiDocument } from 'virtual:openapi'

SwaggerUIBundle({
  url: getOpenApiDocument.path,
  dom_id: '#swagger-ui',
  deepLinking: true,
  showExtensions: true, // x-roles: the roles each operation admits
  // No validator badge: it would send the document to an outside service.
  validatorUrl: null,
})
