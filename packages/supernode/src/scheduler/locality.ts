/** Where a peer says it is: its IDC and its `|`-separated location, wide to narrow. */
export interface Place {
  idc?: string | undefined
  location?: string | undefined
}

/** Score added when two peers share an IDC: it outranks any location prefix (at most 16 parts). */
export const SAME_IDC_NEARNESS = 1_000

/**
 * How near a candidate parent is to a requester, higher is nearer: the same IDC first,
 * then the number of leading location parts they share (`eu|fra|rack7` and
 * `eu|fra|rack9` share 2). Peers that declare nothing are near nobody.
 */
export function nearness (requester: Place | undefined, candidate: Place | undefined): number {
  if (requester == null || candidate == null) {
    return 0
  }
  let score = 0
  if (requester.idc != null && requester.idc === candidate.idc) {
    score += SAME_IDC_NEARNESS
  }
  if (requester.location != null && candidate.location != null) {
    score += sharedPrefix(requester.location, candidate.location)
  }
  return score
}

/** Whether two peers are in one IDC; `undefined` when either did not say. */
export function sameIdc (a: Place | undefined, b: Place | undefined): boolean | undefined {
  if (a?.idc == null || b?.idc == null) {
    return undefined
  }
  return a.idc === b.idc
}

/** Leading `|`-separated parts two locations share, without splitting them (no garbage per call). */
function sharedPrefix (a: string, b: string): number {
  let parts = 0
  let i = 0
  // bounded by the shorter string (at most 512 characters by the schema)
  while (true) {
    const ea = i >= a.length || a.charCodeAt(i) === PIPE
    const eb = i >= b.length || b.charCodeAt(i) === PIPE
    if (ea || eb) {
      if (ea && eb) {
        parts++
        if (i >= a.length || i >= b.length) {
          return parts
        }
        i++
        continue
      }
      return parts
    }
    if (a.charCodeAt(i) !== b.charCodeAt(i)) {
      return parts
    }
    i++
  }
}

const PIPE = 0x7c
