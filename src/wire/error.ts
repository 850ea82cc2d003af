/**
 * The one error every wire decoder throws. `offset` is where in the buffer the
 * offending field starts; `reason` names the rule broken, with its RFC section.
 */
export class WireError extends Error {
  readonly code = 'WireError';
  readonly offset: number;
  readonly reason: string;

  constructor(offset: number, reason: string) {
    super(reason);
    this.name = 'WireError';
    this.offset = offset;
    this.reason = reason;
  }
}
