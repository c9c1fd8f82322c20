import { defineConfig } from 'vite'
import vue from '@vitejs/plugin-vue'
import openapi from './openapi-plugin.js'

// `npm run dev` proxies the API to a local `make run` server (PORT 8080 by default).
const apiTarget = process.env.API_TARGET || 'http://127.0.0.1:8080'

export default defineConfig({
  plugins: [vue(), openapi()],
  server: {
    proxy: { '/api': apiTarget, '/healthz': apiTarget, '/readyz': apiTarget },
  },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    chunkSizeWarningLimit: 300,
  },
  test: {
    environment: 'jsdom',
    include: ['src/**/*.spec.js'],
    restoreMocks: true,
  },
})
