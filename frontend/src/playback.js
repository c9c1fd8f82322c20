// Whether the browser's <audio> element can play a recording, from the format and codec the
// server measured. AMR (raw or in 3GP/MP4) and WMA are the formats call sources hand out that
// desktop browsers do not decode; a browser that says it can (canPlayType) is believed.

// format or codec -> [name shown, media type asked of canPlayType]
const UNPLAYABLE = {
  amr: ['AMR-NB', 'audio/amr'],
  awb: ['AMR-WB', 'audio/amr-wb'],
  amr_nb: ['AMR-NB', 'audio/3gpp; codecs="samr"'],
  amr_wb: ['AMR-WB', 'audio/3gpp; codecs="sawb"'],
  wma: ['WMA', 'audio/x-ms-wma'],
}

// The name of the format when this browser cannot play it, else '' (it can, or may).
export function unplayableFormat(format, codec, canPlayType = defaultCanPlayType) {
  const entry = UNPLAYABLE[format] || UNPLAYABLE[codec]
  if (!entry) return ''
  return canPlayType(entry[1]) ? '' : entry[0]
}

function defaultCanPlayType(type) {
  if (typeof document === 'undefined') return ''
  return document.createElement('audio').canPlayType(type)
}
