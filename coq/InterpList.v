(** * §4 as a relation on result lists: order and multiplicity.

    [results D σ v p r] says that [match(p, v, σ)] of LANGUAGE.md §4 is the
    list [r], in that order and with that multiplicity: one constructor per
    equation of §4 (the names follow the rules of §3, [R_] for "results").
    The relation is inductive, so a result list is a finite derivation.

    [interp_sound_list] and [interp_complete_list] fix that the interpreter
    computes exactly this list (when it finishes, and it finishes for some
    fuel whenever the list exists); [results_det] that the list is unique.
    Swapping the two sides of [p | q], or deduplicating, or filtering results
    in the interpreter breaks [interp_sound_list]. *)

From Coq Require Import String ZArith List Bool Arith Lia.
From PyPM Require Import Syntax Semantics WellFormed Interp InterpProof Totality.
Import ListNotations.

Section Results.
Variable D : program.

Inductive results : subst -> value -> pat -> list subst -> Prop :=
  | R_Wild : forall s v,                                   (* _ → [σ] *)
      results s v PWild [s]
  | R_VarSame : forall s x v,                              (* σ(x) = v → [σ] *)
      lookup s x = Some v ->
      results s v (PVar x) [s]
  | R_VarDiffer : forall s x v w,                          (* σ(x) ≠ v → [] *)
      lookup s x = Some w -> w <> v ->
      results s v (PVar x) []
  | R_VarBind : forall s x v,                              (* x unbound → [σ[x↦v]] *)
      lookup s x = None ->
      results s v (PVar x) [update s x v]
  | R_Lit : forall s l,                                    (* v = l → [σ] *)
      results s (VLit l) (PLit l) [s]
  | R_LitDiffer : forall s l v,                            (* v ≠ l → [] *)
      v <> VLit l ->
      results s v (PLit l) []
  | R_Op : forall s f ps vs r,                             (* thread σ through the arguments *)
      length ps <= length vs ->
      args_results s ps vs r ->
      results s (VTerm f vs) (POp f ps) r
  | R_OpDiffer : forall s f ps v,                          (* not f(v̄) with |p̄| ≤ |v̄| → [] *)
      ~ (exists vs, v = VTerm f vs /\ length ps <= length vs) ->
      results s v (POp f ps) []
  | R_OpVarBind : forall s x f ps vs r,                    (* x unbound: bind it to "f" *)
      length ps <= length vs -> lookup s x = None ->
      args_results (update s x (VLit (LStr f))) ps vs r ->
      results s (VTerm f vs) (POpVar x ps) r
  | R_OpVarSame : forall s x f ps vs r,                    (* σ(x) = "f" *)
      length ps <= length vs -> lookup s x = Some (VLit (LStr f)) ->
      args_results s ps vs r ->
      results s (VTerm f vs) (POpVar x ps) r
  | R_OpVarDiffer : forall s x f ps vs w,                  (* σ(x) ≠ "f" → [] *)
      length ps <= length vs -> lookup s x = Some w -> w <> VLit (LStr f) ->
      results s (VTerm f vs) (POpVar x ps) []
  | R_OpVarNone : forall s x ps v,                         (* not a term, or too few arguments *)
      ~ (exists f vs, v = VTerm f vs /\ length ps <= length vs) ->
      results s v (POpVar x ps) []
  | R_Alt : forall s v p1 p2 r1 r2,                        (* match(p1) ++ match(p2) *)
      results s v p1 r1 -> results s v p2 r2 ->
      results s v (PAlt p1 p2) (r1 ++ r2)
  | R_Exists : forall s v x p r,                           (* under σ \ x, then x put back *)
      results (remove s x) v p r ->
      results s v (PExists x p) (map (fun s' => restore s' x (lookup s x)) r)
  | R_Call : forall s v P xs d r,                          (* the body in a frame (M-Call) *)
      lookup_def D P = Some d -> length xs = length (def_params d) ->
      results (frame_in s xs (def_params d)) v (def_body d) r ->
      results s v (PCall P xs)
              (flat_map (fun t => opt_list (copy_back t xs (def_params d) s)) r)
  | R_CallUndefined : forall s v P xs,                     (* ruled out by §5 *)
      lookup_def D P = None ->
      results s v (PCall P xs) []
  | R_CallArity : forall s v P xs d,                       (* ruled out by §5 *)
      lookup_def D P = Some d -> length xs <> length (def_params d) ->
      results s v (PCall P xs) []
  | R_Guard : forall s v p g r,                            (* the results whose ⟦g⟧ is true *)
      results s v p r ->
      results s v (PGuard p g) (filter (fun s' => eval_guard s' g) r)
  | R_Then : forall s v p x q r r',                        (* for each σ': match(q, σ'(x), σ') *)
      results s v p r -> then_results x q r r' ->
      results s v (PThen p x q) r'
  | R_Fail : forall s v,                                   (* ⊥ → [] *)
      results s v PFail []

(** [args_results σ p̄ v̄ r]: σ threaded through p1/v1 .. pn/vn, each step a flat map. *)
with args_results : subst -> list pat -> list value -> list subst -> Prop :=
  | RA_Nil : forall s vs,
      args_results s [] vs [s]
  | RA_Cons : forall s p ps v vs r r',
      results s v p r -> args_each r ps vs r' ->
      args_results s (p :: ps) (v :: vs) r'

(** The rest of the arguments after each result of the first, concatenated. *)
with args_each : list subst -> list pat -> list value -> list subst -> Prop :=
  | RE_Nil : forall ps vs,
      args_each [] ps vs []
  | RE_Cons : forall s l ps vs r1 r2,
      args_results s ps vs r1 -> args_each l ps vs r2 ->
      args_each (s :: l) ps vs (r1 ++ r2)

(** [q] against [σ'(x)] after each result σ' of [p], concatenated ([x] is
    bound in every σ' of a well-formed pattern; an unbound one gives []). *)
with then_results : string -> pat -> list subst -> list subst -> Prop :=
  | RT_Nil : forall x q,
      then_results x q [] []
  | RT_Bound : forall x q s w l r1 r2,
      lookup s x = Some w -> results s w q r1 -> then_results x q l r2 ->
      then_results x q (s :: l) (r1 ++ r2)
  | RT_Unbound : forall x q s l r2,
      lookup s x = None -> then_results x q l r2 ->
      then_results x q (s :: l) r2.

Scheme results_mut := Induction for results Sort Prop
  with args_results_mut := Induction for args_results Sort Prop
  with args_each_mut := Induction for args_each Sort Prop
  with then_results_mut := Induction for then_results Sort Prop.

(** ** The interpreter computes the list (soundness for lists) *)

Lemma args_each_sound : forall m ps vs l r,
  (forall s r, In s l -> interp_args m ps vs s = Ok r -> args_results s ps vs r) ->
  flat_map_out (interp_args m ps vs) l = Ok r -> args_each l ps vs r.
Proof.
  induction l as [| s l IH]; simpl; intros r Hs H.
  - inversion H; constructor.
  - destruct (interp_args m ps vs s) as [| r1] eqn:E1; try discriminate.
    destruct (flat_map_out (interp_args m ps vs) l) as [| r2] eqn:E2; try discriminate.
    inversion H; subst. constructor; auto.
Qed.

Lemma interp_args_sound_list : forall n ps vs s r,
  (forall p v s r, In p ps -> interp D n p v s = Ok r -> results s v p r) ->
  length ps <= length vs ->
  interp_args (interp D n) ps vs s = Ok r -> args_results s ps vs r.
Proof.
  induction ps as [| p ps IH]; intros vs s r Hm Hl H.
  - simpl in H. destruct vs; inversion H; constructor.
  - destruct vs as [| v vs]; simpl in Hl; [lia |]. simpl in H. unfold obind in H.
    destruct (interp D n p v s) as [| r1] eqn:E1; try discriminate.
    econstructor; [apply Hm; [left; auto | exact E1] |].
    eapply args_each_sound; [| exact H].
    intros s' r' _ H'. apply IH; auto; [intros; apply Hm; auto; right; auto | lia].
Qed.

Lemma then_sound : forall n x q l r,
  (forall v s r, interp D n q v s = Ok r -> results s v q r) ->
  flat_map_out (fun s' => match lookup s' x with
                          | Some w => interp D n q w s'
                          | None => Ok []
                          end) l = Ok r ->
  then_results x q l r.
Proof.
  induction l as [| s l IH]; simpl; intros r Hq H.
  - inversion H; constructor.
  - destruct (lookup s x) as [w|] eqn:Ex.
    + destruct (interp D n q w s) as [| r1] eqn:E1; try discriminate.
      destruct (flat_map_out _ l) as [| r2] eqn:E2; try discriminate.
      inversion H; subst. econstructor; eauto.
    + destruct (flat_map_out _ l) as [| r2] eqn:E2; try discriminate.
      inversion H; subst. apply RT_Unbound; auto.
Qed.

Theorem interp_sound_list : forall n p v s r,
  interp D n p v s = Ok r -> results s v p r.
Proof.
  induction n as [| n IH]; intros p v s r H; [discriminate |].
  destruct p; simpl in H.
  - inversion H; constructor.
  - unfold bind_var in H. destruct (lookup s x) as [w|] eqn:E.
    + destruct (value_eqb w v) eqn:Ew; inversion H; subst.
      * apply value_eqb_spec in Ew; subst. constructor; auto.
      * eapply R_VarDiffer; eauto. intro Hwv; subst. rewrite value_eqb_refl in Ew; discriminate.
    + inversion H; apply R_VarBind; auto.
  - destruct (value_eqb v (VLit l)) eqn:E; inversion H; subst.
    + apply value_eqb_spec in E; subst; constructor.
    + apply R_LitDiffer. intro Hv; subst. rewrite value_eqb_refl in E; discriminate.
  - destruct v as [g vs | l].
    + destruct (String.eqb f g) eqn:Ef; simpl in H.
      * apply String.eqb_eq in Ef; subst g.
        destruct (length ps <=? length vs) eqn:El.
        -- apply Nat.leb_le in El. constructor; auto. eapply interp_args_sound_list; eauto.
        -- inversion H; subst. apply R_OpDiffer. intros (vs' & E & Hl). inversion E; subst.
           apply Nat.leb_le in Hl. congruence.
      * inversion H; subst. apply R_OpDiffer. intros (vs' & E & Hl). inversion E; subst.
        rewrite String.eqb_refl in Ef; discriminate.
    + inversion H; subst. apply R_OpDiffer. intros (vs' & E & _); discriminate.
  - destruct v as [g vs | l].
    + destruct (length ps <=? length vs) eqn:El.
      * apply Nat.leb_le in El. unfold bind_var in H. destruct (lookup s x) as [w|] eqn:Ex.
        -- destruct (value_eqb w (VLit (LStr g))) eqn:Ew.
           ++ apply value_eqb_spec in Ew; subst. apply R_OpVarSame; auto.
              eapply interp_args_sound_list; eauto.
           ++ inversion H; subst. eapply R_OpVarDiffer; eauto.
              intro Hw; subst; rewrite value_eqb_refl in Ew; discriminate.
        -- apply R_OpVarBind; auto. eapply interp_args_sound_list; eauto.
      * inversion H; subst. apply R_OpVarNone. intros (f & vs' & E & Hl). inversion E; subst.
        apply Nat.leb_le in Hl. congruence.
    + inversion H; subst. apply R_OpVarNone. intros (f & vs' & E & _); discriminate.
  - unfold oapp in H. destruct (interp D n p1 v s) as [| r1] eqn:E1; try discriminate.
    destruct (interp D n p2 v s) as [| r2] eqn:E2; try discriminate.
    inversion H; subst. constructor; eauto.
  - unfold omap in H. destruct (interp D n p v (remove s x)) as [| r1] eqn:E; try discriminate.
    inversion H; subst. constructor; eauto.
  - destruct (lookup_def D P) as [d|] eqn:Ed; [| inversion H; subst; apply R_CallUndefined; auto].
    destruct (length xs =? length (def_params d)) eqn:El.
    + apply Nat.eqb_eq in El. unfold omap in H.
      destruct (interp D n (def_body d) v (frame_in s xs (def_params d))) as [| r1] eqn:E;
        try discriminate.
      inversion H; subst. eapply R_Call; eauto.
    + inversion H; subst. eapply R_CallArity; eauto. apply Nat.eqb_neq; auto.
  - unfold omap in H. destruct (interp D n p v s) as [| r1] eqn:E; try discriminate.
    inversion H; subst. constructor; eauto.
  - unfold obind in H. destruct (interp D n p1 v s) as [| r1] eqn:E; try discriminate.
    econstructor; [eauto |]. eapply then_sound; [| exact H]. intros; eauto.
  - inversion H; constructor.
Qed.

(** ** The list is computed at some fuel (completeness for lists) *)

Definition fuel_ok (o : nat -> outcome) (r : list subst) : Prop :=
  exists n, forall m, n <= m -> o m = Ok r.

Lemma fuel_ok_interp : forall p v s r,
  (exists n, interp D n p v s = Ok r) -> fuel_ok (fun m => interp D m p v s) r.
Proof.
  intros p v s r (n & H). exists n. intros m Hm. eapply interp_fuel_mono; eauto.
Qed.

Ltac use_max n1 n2 := exists (S (Nat.max n1 n2)); intros m Hm;
  destruct m as [| m]; [lia |].

Lemma interp_complete_list_mut : forall s v p r, results s v p r ->
  fuel_ok (fun m => interp D m p v s) r.
Proof.
  apply (results_mut
    (fun s v p r _ => fuel_ok (fun m => interp D m p v s) r)
    (fun s ps vs r _ => fuel_ok (fun m => interp_args (interp D m) ps vs s) r)
    (fun l ps vs r _ => fuel_ok (fun m => flat_map_out (interp_args (interp D m) ps vs) l) r)
    (fun x q l r _ => fuel_ok (fun m => flat_map_out (fun s' => match lookup s' x with
                          | Some w => interp D m q w s'
                          | None => Ok []
                          end) l) r));
    unfold fuel_ok; intros.
  - exists 1; intros [| m] Hm; [lia | reflexivity].
  - exists 1; intros [| m] Hm; [lia |]. simpl. unfold bind_var. rewrite e, value_eqb_refl.
    reflexivity.
  - exists 1; intros [| m] Hm; [lia |]. simpl. unfold bind_var. rewrite e.
    destruct (value_eqb w v) eqn:E; auto. apply value_eqb_spec in E; congruence.
  - exists 1; intros [| m] Hm; [lia |]. simpl. unfold bind_var. rewrite e. reflexivity.
  - exists 1; intros [| m] Hm; [lia |]. cbn [interp]. rewrite value_eqb_refl. reflexivity.
  - exists 1; intros [| m] Hm; [lia |]. cbn [interp].
    destruct (value_eqb v (VLit l)) eqn:E; auto. apply value_eqb_spec in E; congruence.
  - destruct H as (n & Hn). exists (S n); intros [| m] Hm; [lia |]. simpl.
    rewrite String.eqb_refl. apply Nat.leb_le in l. rewrite l. apply Hn; lia.
  - exists 1; intros [| m] Hm; [lia |]. simpl. destruct v as [g vs | l]; auto.
    destruct (String.eqb f g) eqn:Ef; auto. apply String.eqb_eq in Ef; subst g.
    destruct (length ps <=? length vs) eqn:El; auto. apply Nat.leb_le in El.
    exfalso; eauto.
  - destruct H as (n & Hn). exists (S n); intros [| m] Hm; [lia |]. simpl.
    apply Nat.leb_le in l. rewrite l. unfold bind_var. rewrite e. apply Hn; lia.
  - destruct H as (n & Hn). exists (S n); intros [| m] Hm; [lia |]. simpl.
    apply Nat.leb_le in l. rewrite l. unfold bind_var. rewrite e, value_eqb_refl. apply Hn; lia.
  - exists 1; intros [| m] Hm; [lia |]. simpl.
    apply Nat.leb_le in l. rewrite l. unfold bind_var. rewrite e.
    destruct (value_eqb w (VLit (LStr f))) eqn:E; auto. apply value_eqb_spec in E; congruence.
  - exists 1; intros [| m] Hm; [lia |]. simpl. destruct v as [g vs | l]; auto.
    destruct (length ps <=? length vs) eqn:El; auto. apply Nat.leb_le in El.
    exfalso; eauto.
  - destruct H as (n1 & H1), H0 as (n2 & H2). use_max n1 n2. simpl.
    rewrite H1, H2 by lia. reflexivity.
  - destruct H as (n & Hn). exists (S n); intros [| m] Hm; [lia |]. simpl.
    rewrite Hn by lia. reflexivity.
  - destruct H as (n & Hn). exists (S n); intros [| m] Hm; [lia |]. simpl.
    rewrite e, e0, Nat.eqb_refl, Hn by lia. reflexivity.
  - exists 1; intros [| m] Hm; [lia |]. simpl. rewrite e. reflexivity.
  - exists 1; intros [| m] Hm; [lia |]. simpl. rewrite e.
    apply Nat.eqb_neq in n. rewrite n. reflexivity.
  - destruct H as (n & Hn). exists (S n); intros [| m] Hm; [lia |]. simpl.
    rewrite Hn by lia. reflexivity.
  - destruct H as (n1 & H1), H0 as (n2 & H2). use_max n1 n2. simpl.
    rewrite H1 by lia. apply H2; lia.
  - exists 1; intros [| m] Hm; [lia | reflexivity].
  - exists 0; intros m _. destruct vs; reflexivity.
  - destruct H as (n1 & H1), H0 as (n2 & H2). exists (Nat.max n1 n2); intros m Hm. simpl.
    unfold obind. rewrite H1 by lia. apply H2; lia.
  - exists 0; intros m _. reflexivity.
  - destruct H as (n1 & H1), H0 as (n2 & H2). exists (Nat.max n1 n2); intros m Hm. simpl.
    rewrite H1, H2 by lia. reflexivity.
  - exists 0; intros m _. reflexivity.
  - destruct H as (n1 & H1), H0 as (n2 & H2). exists (Nat.max n1 n2); intros m Hm. simpl.
    rewrite e, H1, H2 by lia. reflexivity.
  - destruct H as (n & Hn). exists n; intros m Hm. simpl. rewrite e, Hn by lia. reflexivity.
Qed.

Theorem interp_complete_list : forall s v p r, results s v p r ->
  exists n, forall m, n <= m -> interp D m p v s = Ok r.
Proof. exact interp_complete_list_mut. Qed.

(** The list of §4 is unique. *)
Theorem results_det : forall s v p r1 r2,
  results s v p r1 -> results s v p r2 -> r1 = r2.
Proof.
  intros s v p r1 r2 H1 H2.
  destruct (interp_complete_list s v p r1 H1) as (n1 & E1).
  destruct (interp_complete_list s v p r2 H2) as (n2 & E2).
  assert (A1 := E1 (Nat.max n1 n2) ltac:(lia)). assert (A2 := E2 (Nat.max n1 n2) ltac:(lia)).
  rewrite A1 in A2. inversion A2; reflexivity.
Qed.

(** Whatever the interpreter returns, at any fuel, is the list of §4. *)
Corollary interp_list_iff : forall s v p r,
  results s v p r <-> exists n, interp D n p v s = Ok r.
Proof.
  split.
  - intros H. destruct (interp_complete_list s v p r H) as (n & E). exists n; auto.
  - intros (n & E). eapply interp_sound_list; eauto.
Qed.

End Results.

(** What the extracted driver runs: at the fuel of §6, for a program its
    checkers accept, the interpreter returns the list of §4, and that list
    exists (it is unique by [results_det]). *)
Theorem extracted_interp_exact : forall D p v s,
  check_program D = true -> check_guarded D = true -> check_query D p = true ->
  exists r, interp D (fuel_bound D p v) p v s = Ok r /\ results D s v p r.
Proof.
  intros D p v s HD HG Hp.
  destruct (extracted_interp_total D p v s HD HG Hp) as (r & E).
  exists r; split; auto. eapply interp_sound_list; eauto.
Qed.
