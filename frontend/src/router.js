import { watch } from 'vue'
import { createRouter, createWebHistory } from 'vue-router'
import { can, isSignedIn, session } from './api/session.js'
import { locale, t } from './i18n/index.js'

// Pages load lazily: the sign-in page does not wait for the charts or the tables.
export const routes = [
  { path: '/login', name: 'login', component: () => import('./pages/SignInPage.vue'), meta: { public: true, title: 'titles.login' } },
  { path: '/', name: 'dashboard', component: () => import('./pages/DashboardPage.vue'), meta: { needs: 'stats', title: 'titles.dashboard' } },
  { path: '/calls', name: 'calls', component: () => import('./pages/CallsPage.vue'), meta: { needs: 'read', title: 'titles.calls' } },
  { path: '/calls/:id', name: 'call', component: () => import('./pages/CallDetailPage.vue'), meta: { needs: 'read', title: 'titles.call' }, props: true },
  { path: '/upload', name: 'upload', component: () => import('./pages/UploadPage.vue'), meta: { needs: 'upload', title: 'titles.upload' } },
  { path: '/destinations', name: 'destinations', component: () => import('./pages/DestinationsPage.vue'), meta: { needs: 'destinations', title: 'titles.destinations' } },
  { path: '/dead-letters', name: 'dead-letters', component: () => import('./pages/DeadLettersPage.vue'), meta: { needs: 'deadLetters', title: 'titles.deadLetters' } },
  { path: '/users', name: 'users', component: () => import('./pages/UsersPage.vue'), meta: { needs: 'admin', title: 'titles.users' } },
  { path: '/api-keys', name: 'api-keys', component: () => import('./pages/ApiKeysPage.vue'), meta: { needs: 'admin', title: 'titles.apiKeys' } },
  { path: '/audit', name: 'audit', component: () => import('./pages/AuditPage.vue'), meta: { needs: 'admin', title: 'titles.audit' } },
  { path: '/:pathMatch(.*)*', name: 'not-found', component: () => import('./pages/NotFoundPage.vue'), meta: { title: 'titles.notFound' } },
]

// meta.title is a message key: the title is written in the chosen language.
export function pageTitle(route) {
  const app = t('app.name')
  return route.meta?.title ? `${t(route.meta.title)} · ${app}` : app
}

function setTitle(route) {
  document.title = pageTitle(route)
}

// Where a role lands after signing in (a source has no dashboard).
export function homeFor(role) {
  return can('stats', role) ? { name: 'dashboard' } : { name: 'calls' }
}

export function guard(to) {
  if (to.meta.public) {
    return isSignedIn() && to.name === 'login' ? homeFor(session.role) : true
  }
  if (!isSignedIn()) {
    return { name: 'login', query: to.fullPath !== '/' ? { next: to.fullPath } : {} }
  }
  if (to.meta.needs && !can(to.meta.needs)) {
    return to.name === 'dashboard' ? homeFor(session.role) : { name: 'not-found', params: { pathMatch: to.path.slice(1).split('/') } }
  }
  return true
}

export function createAppRouter(history = createWebHistory()) {
  const router = createRouter({ history, routes })
  router.beforeEach(guard)
  router.afterEach((to) => setTitle(to))
  // The title follows a language switch on the page being shown.
  watch(locale, () => setTitle(router.currentRoute.value))
  return router
}
