import { defineConfig } from 'vite'
import openapi from './openapi-plugin.js'

// The API reference at /docs (docs/index.html), built after the operator UI into the same
// dist/ (`npm run build`): Swagger UI from npm, bundled, so the page loads nothing from a CDN.
// Its own build, so the UI keeps its chunk budget; Swagger UI alone is about 1.6 MB.
export default defineConfig({
  plugins: [openapi()],
  build: {
    outDir: 'dist',
    emptyOutDir: false,
    chunkSizeWarningLimit: 2000,
    rollupOptions: { input: { docs: 'docs/index.html' } },
  },
})
