/** A request the live view follows, with the label it is shown under. */
export interface TrackedRequest {
  readonly key: string;
  readonly label: string;
}

/** Shows the demo's requests while the worker runs them. */
export interface LiveView {
  /** Starts following the requests. */
  start(): void;
  /** Prints a line without disturbing the view. */
  log(line: string): void;
  /** Stops following, leaving the last state on screen. */
  stop(): Promise<void>;
}
