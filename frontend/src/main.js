import { createApp } from 'vue'
import App from './App.vue'
import { onSessionExpired } from './api/http.js'
import { applyDocumentLanguage, i18n } from './i18n/index.js'
import { createAppRouter } from './router.js'
import './styles.css'

const router = createAppRouter()

// The one place an ended session leads: back to sign-in, returning here afterwards.
onSessionExpired(() => {
  const current = router.currentRoute.value
  if (current.name !== 'login') {
    router.push({ name: 'login', query: { next: current.fullPath, expired: '1' } })
  }
})

applyDocumentLanguage()
createApp(App).use(i18n).use(router).mount('#app')
