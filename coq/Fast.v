(** * The compiled matcher of [pypm/lang/fastmatch.py], with frames for calls.

    [compile E p] is [Compiler._compile]: a pattern becomes a closure
    [m v σ k] in continuation-passing style that calls [k σ' region] on each
    result, in order. The answers of continuations are combined with an
    operation [op] and a neutral [e]: in Python [k] returns a bool ("stop")
    and [|] is [ml(v, σ, k) or mr(v, σ, k)]; collecting every result
    ([all_results]) is the list monoid; "the first result the rewriter
    accepts" is the monoid of options that keeps the first [Some]. Any
    monoid will do: the theorem is proved for all of them.

    The closures of definitions are compiled once ([Compiler._defs]); a call
    runs its definition's closure in a frame ([Compiler._call]). The knot is
    tied by depth: [cprog D n] compiles the definitions with calls nested [n]
    deep ([fastmatch D n]), as the interpreter's fuel bounds the nesting of
    its calls.

    [fastmatch_correct]: whenever [interp_r] (the interpreter with regions,
    [Regions.v]) returns a list at fuel [n], the compiled matcher at any depth
    [m ≥ n] calls its continuation on exactly those results, in that order:
    [fastmatch D m p v σ k = k a1 ⊕ k a2 ⊕ .. ⊕ e]. *)

From Coq Require Import String ZArith List Bool Arith Lia.
From PyPM Require Import Syntax Interp InterpProof Regions.
Import ListNotations.

Section Fast.
Variable A : Type.
Variable e : A.
Variable op : A -> A -> A.

Definition cont := subst -> region -> A.
Definition matcher := value -> subst -> cont -> A.

(** Compiled definitions: parameters and the closure of the body. *)
Definition cenv := string -> option (list string * matcher).

(** [Compiler._chain]: thread σ through the arguments, appending regions. *)
Fixpoint chain (ms : list matcher) (vs : list value) (s : subst) (g : region) (k : cont) : A :=
  match ms, vs with
  | [], _ => k s g
  | m :: ms', v :: vs' => m v s (fun s1 g1 => chain ms' vs' s1 (g ++ g1) k)
  | _ :: _, [] => e
  end.

Fixpoint compile (E : cenv) (p : pat) : matcher :=
  match p with
  | PWild => fun v s k => k s []                                       (* M-Wild *)
  | PVar x => fun v s k =>                                             (* M-Var *)
      match lookup s x with
      | None => k (update s x v) []
      | Some w => if value_eqb w v then k s [] else e
      end
  | PLit l => fun v s k => if value_eqb v (VLit l) then k s [] else e  (* M-Lit *)
  | POp f ps =>                                                        (* M-Op *)
      let ms := (fix go (ps : list pat) : list matcher :=
                   match ps with [] => [] | q :: qs => compile E q :: go qs end) ps in
      fun v s k =>
        match v with
        | VTerm g vs => if String.eqb f g && (length ps <=? length vs)
                        then chain ms vs s [v] k else e
        | VLit _ => e
        end
  | POpVar x ps =>                                                     (* M-OpVar *)
      let ms := (fix go (ps : list pat) : list matcher :=
                   match ps with [] => [] | q :: qs => compile E q :: go qs end) ps in
      fun v s k =>
        match v with
        | VTerm g vs =>
            if length ps <=? length vs then
              match lookup s x with
              | None => chain ms vs (update s x (VLit (LStr g))) [v] k
              | Some w => if value_eqb w (VLit (LStr g)) then chain ms vs s [v] k else e
              end
            else e
        | VLit _ => e
        end
  | PAlt p1 p2 =>                                                      (* M-AltL, M-AltR *)
      let m1 := compile E p1 in let m2 := compile E p2 in
      fun v s k => op (m1 v s k) (m2 v s k)
  | PExists x p =>                                                     (* M-Exists *)
      let mb := compile E p in
      fun v s k => mb v (remove s x) (fun s1 g => k (restore s1 x (lookup s x)) g)
  | PCall P xs => fun v s k =>                                         (* M-Call, a frame *)
      match E P with
      | Some (ys, mb) =>
          if length xs =? length ys then
            mb v (frame_in s xs ys)
               (fun t g => match copy_back t xs ys s with Some s1 => k s1 g | None => e end)
          else e
      | None => e
      end
  | PGuard p c =>                                                      (* M-Guard *)
      let mb := compile E p in
      fun v s k => mb v s (fun s1 g => if eval_guard s1 c then k s1 g else e)
  | PThen p x q =>                                                     (* M-Then *)
      let mb := compile E p in let mq := compile E q in
      fun v s k => mb v s (fun s1 g1 => match lookup s1 x with
                                         | Some w => mq w s1 (fun s2 g2 => k s2 (g1 ++ g2))
                                         | None => e
                                         end)
  | PFail => fun v s k => e                                            (* no rule *)
  end.

(** The definitions, compiled with calls nested up to [n] deep. *)
Fixpoint cprog (D : program) (n : nat) : cenv :=
  fun P => match lookup_def D P with
           | Some d => Some (def_params d, match n with
                                           | O => fun _ _ _ => e
                                           | S n' => compile (cprog D n') (def_body d)
                                           end)
           | None => None
           end.

Definition fastmatch (D : program) (n : nat) (p : pat) : matcher := compile (cprog D n) p.

(** ** Correctness, for any monoid *)

Hypothesis op_assoc : forall a b c, op a (op b c) = op (op a b) c.
Hypothesis op_e_l : forall a, op e a = a.
Hypothesis op_e_r : forall a, op a e = a.

(** [k a1 ⊕ .. ⊕ k an ⊕ e]. *)
Definition M (r : list res) (k : cont) : A := fold_right (fun a acc => op (k (fst a) (snd a)) acc) e r.

Lemma M_app : forall r1 r2 k, M (r1 ++ r2) k = op (M r1 k) (M r2 k).
Proof.
  induction r1 as [| a r1 IH]; intros r2 k; simpl.
  - rewrite op_e_l; reflexivity.
  - rewrite IH, op_assoc; reflexivity.
Qed.

Lemma M_ext : forall r k k', (forall s g, k s g = k' s g) -> M r k = M r k'.
Proof. induction r as [| a r IH]; intros k k' H; simpl; auto. rewrite H, (IH k k'); auto. Qed.

(** Running a continuation over each result of a flat map. *)
Lemma M_rflat : forall f l r k (G : res -> A),
  rflat f l = ROk r ->
  (forall a ra, In a l -> f a = ROk ra -> G a = M ra k) ->
  fold_right (fun a acc => op (G a) acc) e l = M r k.
Proof.
  induction l as [| a l IH]; simpl; intros r k G H HG.
  - inversion H; reflexivity.
  - destruct (f a) as [| ra] eqn:Ea; try discriminate.
    destruct (rflat f l) as [| r'] eqn:El; try discriminate.
    inversion H; subst. rewrite M_app, (HG a ra (or_introl eq_refl) Ea).
    f_equal. apply IH; auto.
Qed.

Lemma M_as_fold : forall r k, M r k = fold_right (fun a acc => op (k (fst a) (snd a)) acc) e r.
Proof. reflexivity. Qed.

Definition chain_ok (D : program) (n : nat) (ms : list matcher) (ps : list pat) : Prop :=
  length ms = length ps /\
  forall i q mq, nth_error ps i = Some q -> nth_error ms i = Some mq ->
    forall v s r, interp_r D n q v s = ROk r -> forall k, mq v s k = M r k.

Lemma chain_correct : forall D n ps ms vs s g r,
  (forall q mq, In (q, mq) (combine ps ms) ->
     forall v s r, interp_r D n q v s = ROk r -> forall k, mq v s k = M r k) ->
  length ms = length ps ->
  rargs (interp_r D n) ps vs s g = ROk r -> forall k, chain ms vs s g k = M r k.
Proof.
  induction ps as [| q ps IH]; intros [| mq ms] vs s g r Hm Hl H k; simpl in Hl; try discriminate.
  - simpl in H. destruct vs; inversion H; subst; simpl; rewrite op_e_r; reflexivity.
  - destruct vs as [| v vs]; simpl in H |- *.
    + inversion H; reflexivity.
    + unfold rbind in H. destruct (interp_r D n q v s) as [| r1] eqn:E1; try discriminate.
      rewrite (Hm q mq (or_introl eq_refl) v s r1 E1).
      rewrite M_as_fold. eapply M_rflat; [exact H |].
      intros a ra _ Ha. simpl. eapply IH; [| eauto | exact Ha].
      intros q0 mq0 Hin v0 s0 r0 E0 k0. eapply Hm; [simpl; right; exact Hin | exact E0].
Qed.

Lemma compile_list_combine : forall E ps q mq,
  In (q, mq) (combine ps ((fix go (ps : list pat) : list matcher :=
                   match ps with [] => [] | q :: qs => compile E q :: go qs end) ps)) ->
  In q ps /\ mq = compile E q.
Proof.
  induction ps as [| p ps IH]; simpl; intros q mq H; [contradiction |].
  destruct H as [E' | H]; [inversion E'; auto |]. destruct (IH q mq H); auto.
Qed.

Lemma compile_list_length : forall E ps,
  length ((fix go (ps : list pat) : list matcher :=
                   match ps with [] => [] | q :: qs => compile E q :: go qs end) ps) = length ps.
Proof. induction ps; simpl; auto. Qed.

Lemma M_filter : forall r k c,
  M (filter (fun a => eval_guard (fst a) c) r) k
  = M r (fun s1 g => if eval_guard s1 c then k s1 g else e).
Proof.
  induction r as [| a r IH]; intros k c; simpl; auto.
  destruct (eval_guard (fst a) c); simpl; rewrite IH; auto.
Qed.

Lemma M_map : forall r k (f : res -> res),
  M (map f r) k = M r (fun s g => k (fst (f (s, g))) (snd (f (s, g)))).
Proof. induction r as [| [s g] r IH]; intros k f; simpl; auto. rewrite IH; auto. Qed.

Lemma M_flat_opt : forall r k (h : subst -> option subst),
  M (flat_map (fun a => match h (fst a) with Some s' => [(s', snd a)] | None => [] end) r) k
  = M r (fun t g => match h t with Some s1 => k s1 g | None => e end).
Proof.
  induction r as [| [t g] r IH]; intros k h; simpl; auto.
  destruct (h t); simpl; rewrite ?IH, ?op_e_l; auto.
Qed.

Theorem fastmatch_correct_monoid : forall D n p v s r,
  interp_r D n p v s = ROk r ->
  forall m, n <= m -> forall k, fastmatch D m p v s k = M r k.
Proof.
  intros D n. induction n as [| n IH]; intros p v s r H m Hm k; [discriminate |].
  assert (IHc : forall q v s r, interp_r D n q v s = ROk r ->
                forall k, compile (cprog D m) q v s k = M r k).
  { intros; eapply IH; eauto; lia. }
  unfold fastmatch. destruct p; simpl in H |- *.
  - inversion H; simpl. rewrite op_e_r; reflexivity.
  - unfold bind_var in H. destruct (lookup s x) as [w|].
    + destruct (value_eqb w v); inversion H; simpl; rewrite ?op_e_r; reflexivity.
    + inversion H; simpl. rewrite op_e_r; reflexivity.
  - destruct (value_eqb v (VLit l)); inversion H; simpl; rewrite ?op_e_r; reflexivity.
  - destruct v as [g vs | l]; [| inversion H; reflexivity].
    destruct (String.eqb f g && (length ps <=? length vs)); [| inversion H; reflexivity].
    eapply chain_correct; [| apply compile_list_length | exact H].
    intros q mq Hin. apply compile_list_combine in Hin as [_ ->]. auto.
  - destruct v as [g vs | l]; [| inversion H; reflexivity].
    destruct (length ps <=? length vs); [| inversion H; reflexivity].
    unfold bind_var in H. destruct (lookup s x) as [w|].
    + destruct (value_eqb w (VLit (LStr g))); [| inversion H; reflexivity].
      eapply chain_correct; [| apply compile_list_length | exact H].
      intros q mq Hin. apply compile_list_combine in Hin as [_ ->]. auto.
    + eapply chain_correct; [| apply compile_list_length | exact H].
      intros q mq Hin. apply compile_list_combine in Hin as [_ ->]. auto.
  - unfold rapp in H. destruct (interp_r D n p1 v s) as [| r1] eqn:E1; try discriminate.
    destruct (interp_r D n p2 v s) as [| r2] eqn:E2; try discriminate.
    inversion H; subst. rewrite M_app, (IHc _ _ _ _ E1), (IHc _ _ _ _ E2). reflexivity.
  - unfold rmap in H. destruct (interp_r D n p v (remove s x)) as [| r1] eqn:E; try discriminate.
    inversion H; subst. rewrite M_map, (IHc _ _ _ _ E). reflexivity.
  - destruct m as [| m']; [lia |]. cbn [cprog].
    destruct (lookup_def D P) as [d|] eqn:Ed; [| inversion H; reflexivity].
    destruct (length xs =? length (def_params d)); [| inversion H; reflexivity].
    unfold rmap in H.
    destruct (interp_r D n (def_body d) v (frame_in s xs (def_params d))) as [| r1] eqn:E;
      try discriminate.
    inversion H; subst. rewrite (M_flat_opt r1 k (fun t => copy_back t xs (def_params d) s)).
    apply (IH (def_body d) v _ r1 E m'). lia.
  - unfold rmap in H. destruct (interp_r D n p v s) as [| r1] eqn:E; try discriminate.
    inversion H; subst. rewrite M_filter, (IHc _ _ _ _ E). reflexivity.
  - unfold rbind in H. destruct (interp_r D n p1 v s) as [| r1] eqn:E; try discriminate.
    rewrite (IHc _ _ _ _ E). rewrite M_as_fold. eapply M_rflat; [exact H |].
    intros [s1 g1] ra _ Ha. simpl in Ha |- *. destruct (lookup s1 x) as [w|].
    + unfold rpre, rmap in Ha. destruct (interp_r D n p2 w s1) as [| r2] eqn:E2; try discriminate.
      inversion Ha; subst. rewrite (IHc _ _ _ _ E2). rewrite M_map. reflexivity.
    + inversion Ha; reflexivity.
  - inversion H; reflexivity.
Qed.

End Fast.

Arguments compile {A} e op E p.
Arguments cprog {A} e op D n.
Arguments fastmatch {A} e op D n p.

(** ** Instances *)

(** Collecting every result ([fastmatch.all_results]): exactly the
    interpreter's list, regions included, in order, with multiplicity. *)
Theorem fastmatch_correct : forall D n p v s r,
  interp_r D n p v s = ROk r -> forall m, n <= m ->
  fastmatch [] (@app res) D m p v s (fun s g => [(s, g)]) = r.
Proof.
  intros D n p v s r H m Hm.
  rewrite (fastmatch_correct_monoid (list res) [] (@app res) (@app_assoc res)
             (fun a => eq_refl) (@app_nil_r res) D n p v s r H m Hm).
  clear H. induction r as [| a r IH]; simpl; auto. rewrite IH. destruct a; reflexivity.
Qed.

(** The first result that the caller accepts ([k] returns [Some] to stop):
    the first accepted result of the interpreter's list. *)
Definition first {X} (a b : option X) : option X := match a with Some _ => a | None => b end.

Theorem fastmatch_first : forall {X} D n p v s r (accept : subst -> region -> option X),
  interp_r D n p v s = ROk r -> forall m, n <= m ->
  fastmatch None first D m p v s accept
  = fold_right (fun a acc => first (accept (fst a) (snd a)) acc) None r.
Proof.
  intros X D n p v s r accept H m Hm.
  apply (fastmatch_correct_monoid (option X) None first) with (n := n); auto.
  - intros [a|] b c; reflexivity.
  - intros [a|]; reflexivity.
Qed.

(** Python's own answer type: [k] returns True to stop, and [|] is [or]. *)
Theorem fastmatch_stops : forall D n p v s r (k : subst -> region -> bool),
  interp_r D n p v s = ROk r -> forall m, n <= m ->
  fastmatch false orb D m p v s k = existsb (fun a => k (fst a) (snd a)) r.
Proof.
  intros D n p v s r k H m Hm.
  transitivity (M bool false orb r k).
  - apply (fastmatch_correct_monoid bool false orb) with (n := n); auto.
    + intros; apply orb_assoc.
    + intros; apply orb_false_r.
  - clear H. induction r as [| a r IH]; simpl; auto.
Qed.
