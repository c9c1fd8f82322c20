import { defineConfig } from 'vite'
import vue from '@vitejs/plugin-vue'
import openapi from './openapi-plugin.js'

// `npm run dev` proxies the API to a local `make run` server (PORT 8080 by default).
const apiTarget = process.env.API_TARGET || 'http://127.0.0.1:8080'

export default defineConfig({
  plugins: [vue(), openapi()],
  // vue-i18n's build flags: the Composition API only, messages compiled in the browser without
  // eval (the CSP allows no 'unsafe-eval'), no devtools in production.
  define: {
    __VUE_I18N_FULL_INSTALL__: true,
    __VUE_I18N_LEGACY_API__: false,
    __INTLIFY_DROP_MESSAGE_COMPILER__: false,
    __INTLIFY_PROD_DEVTOOLS__: false,
  },
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
    setupFiles: ['src/test-setup.js'],
    restoreMocks: true,
  },
})
