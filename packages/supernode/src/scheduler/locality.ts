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

function sharedPrefix (a: string, b: string): number {
  const pa = a.split('|')
  const pb = b.split('|')
  let n = 0
  // bounded by the schema: at most 16 parts
  while (n < pa.length && n < pb.length && pa[n] === pb[n]) {
    n++
  }
  return n
}
