// What the UI says when a request fails, in the operator's language. The API's messages stay
// English (they are for integrators): the UI keys its own message on the error `code`, and
// some of those messages quote the server's English text as {detail}, where it names the
// field or the reason. A code this UI does not know yet still gets a translated sentence.
import { t, te } from './index.js'

export function errorMessage(error) {
  if (!error) return ''
  const body = error.response?.data
  const apiError = body && typeof body === 'object' ? body.error : null
  const status = error.response?.status
  if (apiError && typeof apiError === 'object' && (apiError.code || apiError.message)) {
    const detail = String(apiError.message || apiError.code || '')
    const key = `errors.codes.${apiError.code}`
    if (apiError.code && te(key)) return t(key, { detail })
    return t('errors.unknownCode', { code: apiError.code || status || '?', detail })
  }
  if (status) return t('errors.status', { status })
  if (error.code === 'ECONNABORTED' || error.code === 'ETIMEDOUT') return t('errors.timeout')
  if (error.message === 'Network Error' || error.code === 'ERR_NETWORK') return t('errors.network')
  return t('errors.unexpected')
}
