import { describe, expect, it } from 'vitest'
import { unplayableFormat } from './playback.js'

const plays = () => 'maybe'
const cannot = () => ''

describe('unplayableFormat', () => {
  it('names AMR and WMA, raw or by codec, when the browser cannot play them', () => {
    expect(unplayableFormat('amr', 'amr_nb', cannot)).toBe('AMR-NB')
    expect(unplayableFormat('awb', 'amr_wb', cannot)).toBe('AMR-WB')
    expect(unplayableFormat('m4a', 'amr_nb', cannot)).toBe('AMR-NB')
    expect(unplayableFormat('m4a', 'amr_wb', cannot)).toBe('AMR-WB')
    expect(unplayableFormat('wma', 'wmav2', cannot)).toBe('WMA')
  })

  it('believes a browser that says it can play them', () => {
    expect(unplayableFormat('amr', 'amr_nb', plays)).toBe('')
  })

  it('leaves the formats browsers play to the player', () => {
    for (const [format, codec] of [['webm', 'opus'], ['mka', 'vorbis'], ['mp3', 'mp3'], ['m4a', 'aac'], ['wav', 'pcm_s16le'], ['', '']]) {
      expect(unplayableFormat(format, codec, cannot)).toBe('')
    }
  })
})
