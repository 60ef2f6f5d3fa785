(* Driver for the interpreter extracted from Coq (../Interp.v).

   Reads cases from stdin, one s-expression per line, and prints one line per case:
     (case (program (def P (y1 ..) BODY) ..) PATTERN VALUE (subst (x VALUE) ..))
   VALUE   ::= (term f VALUE..) | LIT
   LIT     ::= (int N) | (str "s") | (bool true|false) | none | (tuple LIT..)
   PATTERN ::= _ | (var x) | (lit LIT) | (op f PATTERN..) | (opvar x PATTERN..)
             | (alt P P) | (exists x P) | (call P x..) | (guard P GUARD) | (then P x P) | fail
   GUARD   ::= true | false | (eq A A) | (neq A A) | (not G) | (and G G) | (or G G)
   A       ::= (var x) | (lit LIT)
   Output: "wf " or "notwf " (the Coq checkers: well-formed program and pattern, from B = {},
   and guarded recursion),
   then "outoffuel" or (ok (s (x VALUE)..)..), each substitution's bindings sorted by name.
   A line (rcase ...), with the same fields, runs the interpreter with regions (interp_r of
   Regions.v) and answers (rok (r (s (x VALUE)..) (region VALUE..))..) instead. *)

open Pypm

type sexp = Atom of string | Str of string | List of sexp list

exception Parse_error of string

let tokenize (s : string) : sexp list =
  let n = String.length s in
  let i = ref 0 in
  let rec items acc =
    while !i < n && (s.[!i] = ' ' || s.[!i] = '\n' || s.[!i] = '\t' || s.[!i] = '\r') do incr i done;
    if !i >= n then List.rev acc
    else match s.[!i] with
      | ')' -> incr i; List.rev acc
      | _ -> let e = one () in items (e :: acc)
  and one () =
    match s.[!i] with
    | '(' -> incr i; List (items [])
    | '"' ->
        incr i;
        let b = Buffer.create 16 in
        while s.[!i] <> '"' do
          if s.[!i] = '\\' then incr i;
          Buffer.add_char b s.[!i]; incr i
        done;
        incr i; Str (Buffer.contents b)
    | _ ->
        let j = !i in
        while !i < n && not (List.mem s.[!i] [' '; '\n'; '\t'; '\r'; '('; ')']) do incr i done;
        Atom (String.sub s j (!i - j))
  in
  items []

let err what e =
  let rec show = function
    | Atom a -> a | Str s -> "\"" ^ s ^ "\""
    | List l -> "(" ^ String.concat " " (List.map show l) ^ ")" in
  raise (Parse_error (what ^ ": " ^ show e))

let rec value = function
  | List (Atom "term" :: Atom f :: args) -> VTerm (f, List.map value args)
  | e -> VLit (literal e)
and literal = function
  | List [Atom "int"; Atom z] -> LInt (int_of_string z)
  | List [Atom "str"; Str s] -> LStr s
  | List [Atom "bool"; Atom "true"] -> LBool true
  | List [Atom "bool"; Atom "false"] -> LBool false
  | Atom "none" -> LNone
  | List (Atom "tuple" :: ls) -> LTuple (List.map literal ls)
  | e -> err "literal" e

let name = function Atom x -> x | e -> err "name" e

let atom = function
  | List [Atom "var"; Atom x] -> AVar x
  | List [Atom "lit"; l] -> ALit (literal l)
  | e -> err "atom" e

let rec guard = function
  | Atom "true" -> GTrue
  | Atom "false" -> GFalse
  | List [Atom "eq"; a; b] -> GEq (atom a, atom b)
  | List [Atom "neq"; a; b] -> GNeq (atom a, atom b)
  | List [Atom "not"; g] -> GNot (guard g)
  | List [Atom "and"; g; h] -> GAnd (guard g, guard h)
  | List [Atom "or"; g; h] -> GOr (guard g, guard h)
  | e -> err "guard" e

let rec pat = function
  | Atom "_" -> PWild
  | Atom "fail" -> PFail
  | List [Atom "var"; Atom x] -> PVar x
  | List [Atom "lit"; l] -> PLit (literal l)
  | List (Atom "op" :: Atom f :: ps) -> POp (f, List.map pat ps)
  | List (Atom "opvar" :: Atom x :: ps) -> POpVar (x, List.map pat ps)
  | List [Atom "alt"; p; q] -> PAlt (pat p, pat q)
  | List [Atom "exists"; Atom x; p] -> PExists (x, pat p)
  | List (Atom "call" :: Atom f :: xs) -> PCall (f, List.map name xs)
  | List [Atom "guard"; p; g] -> PGuard (pat p, guard g)
  | List [Atom "then"; p; Atom x; q] -> PThen (pat p, x, pat q)
  | e -> err "pattern" e

let definition = function
  | List [Atom "def"; Atom f; List ys; body] ->
      (f, { def_params = List.map name ys; def_body = pat body })
  | e -> err "definition" e

let binding = function
  | List [Atom x; v] -> (x, value v)
  | e -> err "binding" e

let quote s =
  let b = Buffer.create (String.length s + 2) in
  Buffer.add_char b '"';
  String.iter (fun c -> if c = '"' || c = '\\' then Buffer.add_char b '\\'; Buffer.add_char b c) s;
  Buffer.add_char b '"';
  Buffer.contents b

let rec show_literal = function
  | LInt z -> "(int " ^ string_of_int z ^ ")"
  | LStr s -> "(str " ^ quote s ^ ")"
  | LBool b -> if b then "(bool true)" else "(bool false)"
  | LNone -> "none"
  | LTuple ls -> "(tuple" ^ String.concat "" (List.map (fun l -> " " ^ show_literal l) ls) ^ ")"

let rec show_value = function
  | VTerm (f, args) -> "(term " ^ String.concat " " (f :: List.map show_value args) ^ ")"
  | VLit l -> show_literal l

(* A substitution as a finite map: the first binding of each name, sorted by name. *)
let show_subst (s : subst) =
  let names = List.sort_uniq compare (List.map fst s) in
  let one x = match lookup s x with
    | Some v -> "(" ^ x ^ " " ^ show_value v ^ ")"
    | None -> assert false in
  "(s" ^ String.concat "" (List.map (fun x -> " " ^ one x) names) ^ ")"

let run_case = function
  | List [Atom "case"; List (Atom "program" :: defs); p; v; List (Atom "subst" :: bs)] ->
      let d = List.map definition defs and p = pat p and v = value v in
      let s = List.map binding bs in
      let wf = check_program d && check_guarded d && check_query d p in
      let result = match interp d (fuel_bound d p v) p v s with
        | OutOfFuel -> "outoffuel"
        | Ok l -> "(ok" ^ String.concat "" (List.map (fun s -> " " ^ show_subst s) l) ^ ")" in
      (if wf then "wf " else "notwf ") ^ result
  | List [Atom "rcase"; List (Atom "program" :: defs); p; v; List (Atom "subst" :: bs)] ->
      let d = List.map definition defs and p = pat p and v = value v in
      let s = List.map binding bs in
      let wf = check_program d && check_guarded d && check_query d p in
      let one (s, g) =
        "(r " ^ show_subst s ^ " (region" ^ String.concat "" (List.map (fun t -> " " ^ show_value t) g) ^ "))" in
      let result = match interp_r d (fuel_bound d p v) p v s with
        | ROutOfFuel -> "outoffuel"
        | ROk l -> "(rok" ^ String.concat "" (List.map (fun a -> " " ^ one a) l) ^ ")" in
      (if wf then "wf " else "notwf ") ^ result
  | e -> err "case" e

(* One case per line; the answer is flushed after each, so a test can keep one driver running. *)
let () =
  try
    while true do
      let line = input_line stdin in
      if String.trim line <> "" then begin
        let out =
          try String.concat "\n" (List.map run_case (tokenize line))
          with Parse_error m -> "error " ^ m | Invalid_argument m | Failure m -> "error " ^ m in
        print_endline out;
        flush stdout
      end
    done
  with End_of_file -> ()
