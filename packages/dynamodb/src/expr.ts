/**
 * A small builder for DynamoDB expressions: every attribute goes through a `#name` and every
 * value through a `:value`, and only the names and values actually used are sent (DynamoDB
 * rejects unused ones).
 */
export class Expr {
  readonly names: Record<string, string> = {};
  readonly values: Record<string, unknown> = {};
  readonly #set: string[] = [];
  readonly #remove: string[] = [];
  readonly #add: string[] = [];
  #next = 0;

  /** `#attr` for an attribute name (a dotted path is not split: use {@link Expr.path}). */
  n(attr: string): string {
    const alias = `#${attr.replace(/[^A-Za-z0-9_]/g, '_')}`;
    // Distinct attributes that sanitise to the same alias get numbered ones.
    let name = alias;
    let i = 0;
    while (this.names[name] !== undefined && this.names[name] !== attr) name = `${alias}_${String(++i)}`;
    this.names[name] = attr;
    return name;
  }

  /** `#a.#b` for a map entry. */
  path(attr: string, entry: string): string {
    const a = this.n(attr);
    const alias = `#e${String(this.#next++)}`;
    this.names[alias] = entry;
    return `${a}.${alias}`;
  }

  /** `:vN` for a value. */
  v(value: unknown): string {
    const name = `:v${String(this.#next++)}`;
    this.values[name] = value;
    return name;
  }

  /** `SET attr = value`. */
  set(attr: string, value: unknown): this {
    this.#set.push(`${this.n(attr)} = ${this.v(value)}`);
    return this;
  }

  /** A raw SET clause (e.g. `#at = #at + :one`). */
  setRaw(clause: string): this {
    this.#set.push(clause);
    return this;
  }

  /** `REMOVE attr` for each. */
  remove(...attrs: string[]): this {
    for (const a of attrs) this.#remove.push(this.n(a));
    return this;
  }

  /** A raw REMOVE operand (e.g. a map path). */
  removeRaw(operand: string): this {
    this.#remove.push(operand);
    return this;
  }

  /** `ADD attr value`. */
  add(attr: string, value: number): this {
    this.#add.push(`${this.n(attr)} ${this.v(value)}`);
    return this;
  }

  /** The update expression. */
  update(): string {
    const parts: string[] = [];
    if (this.#set.length > 0) parts.push(`SET ${this.#set.join(', ')}`);
    if (this.#remove.length > 0) parts.push(`REMOVE ${this.#remove.join(', ')}`);
    if (this.#add.length > 0) parts.push(`ADD ${this.#add.join(', ')}`);
    return parts.join(' ');
  }

  /** Names and values for a command, omitted when empty. */
  attributes(): {
    ExpressionAttributeNames?: Record<string, string>;
    ExpressionAttributeValues?: Record<string, unknown>;
  } {
    const out: {
      ExpressionAttributeNames?: Record<string, string>;
      ExpressionAttributeValues?: Record<string, unknown>;
    } = {};
    if (Object.keys(this.names).length > 0) out.ExpressionAttributeNames = this.names;
    if (Object.keys(this.values).length > 0) out.ExpressionAttributeValues = this.values;
    return out;
  }
}
