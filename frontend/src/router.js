import { createRouter, createWebHistory } from 'vue-router'
import { can, isSignedIn, session } from './api/session.js'

// Pages load lazily: the sign-in page does not wait for the charts or the tables.
export const routes = [
  { path: '/login', name: 'login', component: () => import('./pages/SignInPage.vue'), meta: { public: true, title: 'Sign in' } },
  { path: '/', name: 'dashboard', component: () => import('./pages/DashboardPage.vue'), meta: { needs: 'stats', title: 'Dashboard' } },
  { path: '/calls', name: 'calls', component: () => import('./pages/CallsPage.vue'), meta: { needs: 'read', title: 'Calls' } },
  { path: '/calls/:id', name: 'call', component: () => import('./pages/CallDetailPage.vue'), meta: { needs: 'read', title: 'Call' }, props: true },
  { path: '/upload', name: 'upload', component: () => import('./pages/UploadPage.vue'), meta: { needs: 'upload', title: 'Upload' } },
  { path: '/destinations', name: 'destinations', component: () => import('./pages/DestinationsPage.vue'), meta: { needs: 'destinations', title: 'Destinations' } },
  { path: '/dead-letters', name: 'dead-letters', component: () => import('./pages/DeadLettersPage.vue'), meta: { needs: 'deadLetters', title: 'Dead letters' } },
  { path: '/users', name: 'users', component: () => import('./pages/UsersPage.vue'), meta: { needs: 'admin', title: 'Users' } },
  { path: '/api-keys', name: 'api-keys', component: () => import('./pages/ApiKeysPage.vue'), meta: { needs: 'admin', title: 'API keys' } },
  { path: '/audit', name: 'audit', component: () => import('./pages/AuditPage.vue'), meta: { needs: 'admin', title: 'Audit log' } },
  { path: '/:pathMatch(.*)*', name: 'not-found', component: () => import('./pages/NotFoundPage.vue'), meta: { title: 'Not found' } },
]

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
  router.afterEach((to) => {
    document.title = `${to.meta.title || 'Call Downloader'} · Call Downloader`
  })
  return router
}
