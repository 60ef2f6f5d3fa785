(** * The interpreter with regions, as [pypm/lang/match.py] runs it.

    Each result of [match.py] carries, beside its substitution, its region:
    the terms consumed by operator patterns, in the order they were matched,
    root first ([Interpreter.run]: [f(p̄)] starts the region with the term,
    each argument appends its own, [p ; x ≍ q] appends q's region to p's).
    [interp_r] is [interp] with regions; [interp_r_erase] says that dropping
    the regions gives [interp] exactly, list for list. *)

From Coq Require Import String ZArith List Bool Arith Lia.
From PyPM Require Import Syntax Interp InterpProof.
Import ListNotations.

Definition region := list value.
Definition res := (subst * region)%type.

Inductive routcome : Type :=
  | ROutOfFuel
  | ROk (l : list res).

Fixpoint rflat (f : res -> routcome) (l : list res) : routcome :=
  match l with
  | [] => ROk []
  | a :: l' =>
      match f a with
      | ROutOfFuel => ROutOfFuel
      | ROk r => match rflat f l' with ROutOfFuel => ROutOfFuel | ROk r' => ROk (r ++ r') end
      end
  end.

Definition rbind (o : routcome) (f : res -> routcome) : routcome :=
  match o with ROutOfFuel => ROutOfFuel | ROk l => rflat f l end.

Definition rmap (f : list res -> list res) (o : routcome) : routcome :=
  match o with ROutOfFuel => ROutOfFuel | ROk l => ROk (f l) end.

Definition rapp (o1 o2 : routcome) : routcome :=
  match o1, o2 with ROk l1, ROk l2 => ROk (l1 ++ l2) | _, _ => ROutOfFuel end.

(** Prefix every region of an outcome with [g]. *)
Definition rpre (g : region) (o : routcome) : routcome :=
  rmap (map (fun a => (fst a, g ++ snd a))) o.

(** [_args]: thread σ through p_i/v_i, appending each argument's region to [g]. *)
Fixpoint rargs (m : pat -> value -> subst -> routcome)
         (ps : list pat) (vs : list value) (s : subst) (g : region) : routcome :=
  match ps, vs with
  | [], _ => ROk [(s, g)]
  | p :: ps', v :: vs' => rbind (m p v s) (fun a => rargs m ps' vs' (fst a) (g ++ snd a))
  | _ :: _, [] => ROk []
  end.

Section InterpR.
Variable D : program.

Fixpoint interp_r (fuel : nat) (p : pat) (v : value) (s : subst) {struct fuel} : routcome :=
  match fuel with
  | O => ROutOfFuel
  | S n =>
      match p with
      | PWild => ROk [(s, [])]
      | PVar x => ROk (map (fun s' => (s', [])) (opt_list (bind_var s x v)))
      | PLit l => if value_eqb v (VLit l) then ROk [(s, [])] else ROk []
      | POp f ps =>
          match v with
          | VTerm g vs =>
              if String.eqb f g && (length ps <=? length vs)
              then rargs (interp_r n) ps vs s [v] else ROk []
          | VLit _ => ROk []
          end
      | POpVar x ps =>
          match v with
          | VTerm g vs =>
              if length ps <=? length vs then
                match bind_var s x (VLit (LStr g)) with
                | Some s' => rargs (interp_r n) ps vs s' [v]
                | None => ROk []
                end
              else ROk []
          | VLit _ => ROk []
          end
      | PAlt p1 p2 => rapp (interp_r n p1 v s) (interp_r n p2 v s)
      | PExists x p =>
          rmap (map (fun a => (restore (fst a) x (lookup s x), snd a)))
               (interp_r n p v (remove s x))
      | PCall P xs =>
          match lookup_def D P with
          | Some d =>
              if length xs =? length (def_params d) then
                rmap (flat_map (fun a => match copy_back (fst a) xs (def_params d) s with
                                         | Some s' => [(s', snd a)]
                                         | None => []
                                         end))
                     (interp_r n (def_body d) v (frame_in s xs (def_params d)))
              else ROk []
          | None => ROk []
          end
      | PGuard p g => rmap (filter (fun a => eval_guard (fst a) g)) (interp_r n p v s)
      | PThen p x q =>
          rbind (interp_r n p v s)
                (fun a => match lookup (fst a) x with
                          | Some w => rpre (snd a) (interp_r n q w (fst a))
                          | None => ROk []
                          end)
      | PFail => ROk []
      end
  end.

End InterpR.

(** ** Dropping the regions gives [interp] *)

Definition erase (o : routcome) : outcome :=
  match o with ROutOfFuel => OutOfFuel | ROk l => Ok (map fst l) end.

Lemma erase_rflat : forall f g l,
  (forall a, erase (f a) = g (fst a)) ->
  erase (rflat f l) = flat_map_out g (map fst l).
Proof.
  intros f g l H. induction l as [| a l IH]; simpl; auto.
  rewrite <- H. destruct (f a) as [| r]; simpl; auto.
  destruct (rflat f l) as [| r']; simpl in *; rewrite <- IH; auto.
  rewrite map_app; reflexivity.
Qed.

Lemma erase_rargs : forall m m' ps vs s g,
  (forall p v s, erase (m p v s) = m' p v s) ->
  erase (rargs m ps vs s g) = interp_args m' ps vs s.
Proof.
  intros m m' ps. induction ps as [| p ps IH]; intros [| v vs] s g H; simpl; auto.
  unfold rbind, obind. rewrite <- H. destruct (m p v s) as [| l]; simpl; auto.
  apply erase_rflat. intros a. apply IH; auto.
Qed.

Lemma map_fst_flat_map : forall (f : subst -> option subst) (l : list res),
  map fst (flat_map (fun a => match f (fst a) with Some s' => [(s', snd a)] | None => [] end) l)
  = flat_map (fun t => opt_list (f t)) (map fst l).
Proof.
  intros f l. induction l as [| a l IH]; simpl; auto.
  rewrite map_app, IH. destruct (f (fst a)); reflexivity.
Qed.

Theorem interp_r_erase : forall D n p v s,
  erase (interp_r D n p v s) = interp D n p v s.
Proof.
  intros D n. induction n as [| n IH]; intros p v s; [reflexivity |].
  destruct p; simpl.
  - reflexivity.
  - destruct (bind_var s x v); reflexivity.
  - destruct (value_eqb v (VLit l)); reflexivity.
  - destruct v as [g vs | l]; auto. destruct (String.eqb f g && (length ps <=? length vs)); auto.
    apply erase_rargs; auto.
  - destruct v as [g vs | l]; auto. destruct (length ps <=? length vs); auto.
    destruct (bind_var s x (VLit (LStr g))); auto. apply erase_rargs; auto.
  - rewrite <- !IH. destruct (interp_r D n p1 v s), (interp_r D n p2 v s); simpl; auto.
    rewrite map_app; reflexivity.
  - rewrite <- IH. destruct (interp_r D n p v (remove s x)); simpl; auto.
    rewrite !map_map; reflexivity.
  - destruct (lookup_def D P) as [d|]; auto. destruct (length xs =? length (def_params d)); auto.
    rewrite <- IH. destruct (interp_r D n (def_body d) v (frame_in s xs (def_params d)));
      simpl; auto.
    f_equal. apply (map_fst_flat_map (fun t => copy_back t xs (def_params d) s)).
  - rewrite <- IH. destruct (interp_r D n p v s); simpl; auto. f_equal.
    induction l as [| a l IHl]; simpl; auto. destruct (eval_guard (fst a) g); simpl; congruence.
  - unfold rbind, obind. rewrite <- IH. destruct (interp_r D n p1 v s) as [| l]; simpl; auto.
    apply erase_rflat. intros a. destruct (lookup (fst a) x) as [w|]; simpl; auto.
    rewrite <- IH. destruct (interp_r D n p2 w (fst a)); simpl; auto. rewrite map_map; reflexivity.
  - reflexivity.
Qed.

(** ** More fuel never loses results (as [interp_fuel_mono]) *)

Lemma rflat_mono : forall f g l r,
  (forall a r, f a = ROk r -> g a = ROk r) -> rflat f l = ROk r -> rflat g l = ROk r.
Proof.
  induction l as [| a l IH]; simpl; intros r Hfg H; auto.
  destruct (f a) as [| ra] eqn:Ea; try discriminate. rewrite (Hfg _ _ Ea).
  destruct (rflat f l) as [| rl] eqn:El; try discriminate. rewrite (IH rl Hfg eq_refl). exact H.
Qed.

Lemma rargs_mono : forall m1 m2 ps vs s g r,
  (forall p v s r, m1 p v s = ROk r -> m2 p v s = ROk r) ->
  rargs m1 ps vs s g = ROk r -> rargs m2 ps vs s g = ROk r.
Proof.
  induction ps as [| p ps IH]; intros [| v vs] s g r Hm H; simpl in *; auto.
  unfold rbind in *. destruct (m1 p v s) as [| r1] eqn:E1; try discriminate.
  rewrite (Hm _ _ _ _ E1). eapply rflat_mono; [| exact H]. intros; eauto.
Qed.

Theorem interp_r_fuel_mono : forall D n m p v s r,
  n <= m -> interp_r D n p v s = ROk r -> interp_r D m p v s = ROk r.
Proof.
  intros D n. induction n as [| n IH]; intros m p v s r Hnm H; [discriminate |].
  destruct m as [| m]; [lia |]. assert (Hnm' : n <= m) by lia.
  assert (IH' : forall p v s r, interp_r D n p v s = ROk r -> interp_r D m p v s = ROk r)
    by (intros; eapply IH; eauto).
  destruct p; simpl in *; auto.
  - destruct v as [g vs | l]; auto. destruct (String.eqb f g && (length ps <=? length vs)); auto.
    eapply rargs_mono; eauto.
  - destruct v as [g vs | l]; auto. destruct (length ps <=? length vs); auto.
    destruct (bind_var s x (VLit (LStr g))); auto. eapply rargs_mono; eauto.
  - unfold rapp in *. destruct (interp_r D n p1 v s) eqn:E1; try discriminate.
    destruct (interp_r D n p2 v s) eqn:E2; try discriminate.
    rewrite (IH' _ _ _ _ E1), (IH' _ _ _ _ E2). exact H.
  - unfold rmap in *. destruct (interp_r D n p v (remove s x)) eqn:E; try discriminate.
    rewrite (IH' _ _ _ _ E). exact H.
  - destruct (lookup_def D P); auto. destruct (length xs =? length (def_params d)); auto.
    unfold rmap in *.
    destruct (interp_r D n (def_body d) v (frame_in s xs (def_params d))) eqn:E; try discriminate.
    rewrite (IH' _ _ _ _ E). exact H.
  - unfold rmap in *. destruct (interp_r D n p v s) eqn:E; try discriminate.
    rewrite (IH' _ _ _ _ E). exact H.
  - unfold rbind in *. destruct (interp_r D n p1 v s) eqn:E; try discriminate.
    rewrite (IH' _ _ _ _ E). eapply rflat_mono; [| exact H].
    intros a r0 H0; simpl in H0 |- *. destruct (lookup (fst a) x) as [w|]; auto.
    unfold rpre, rmap in *. destruct (interp_r D n p2 w (fst a)) eqn:E2; try discriminate.
    rewrite (IH' _ _ _ _ E2). exact H0.
Qed.
