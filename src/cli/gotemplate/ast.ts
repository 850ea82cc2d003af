/**
 * The parse tree, after Go's text/template/parse/node.go: the nodes the parser
 * builds and the executor walks. Kept apart from both so that each depends on
 * these types only, not on the other.
 */

/** Where a node starts in the source, and how Go would print it in an error. */
export interface Located {
  readonly pos: number;
  readonly text: string;
}

export type Arg =
  | (Located & { readonly kind: 'field'; readonly idents: readonly string[] })
  | (Located & { readonly kind: 'variable'; readonly name: string; readonly idents: readonly string[] })
  | (Located & { readonly kind: 'chain'; readonly node: Arg; readonly idents: readonly string[] })
  | (Located & { readonly kind: 'identifier'; readonly name: string })
  | (Located & { readonly kind: 'dot' })
  | (Located & { readonly kind: 'nil' })
  | (Located & { readonly kind: 'literal'; readonly value: string | number | boolean })
  | (Located & { readonly kind: 'pipe'; readonly pipe: Pipe });

export interface Command extends Located {
  readonly args: readonly Arg[];
}

export interface Pipe extends Located {
  readonly decl: readonly string[];
  readonly isAssign: boolean;
  readonly cmds: readonly Command[];
}

export type Node =
  | { readonly kind: 'text'; readonly text: string }
  | { readonly kind: 'action'; readonly pipe: Pipe }
  | {
      readonly kind: 'if' | 'with' | 'range';
      readonly pipe: Pipe;
      readonly list: readonly Node[];
      readonly elseList: readonly Node[] | null;
    }
  | (Located & { readonly kind: 'break' | 'continue' });

/** `{{end}}` and `{{else}}` only delimit lists; they never stay in the tree. */
export type Delimiter = { readonly kind: 'end' } | { readonly kind: 'else' };
