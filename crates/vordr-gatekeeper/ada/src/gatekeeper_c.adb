with Policy;

package body Gatekeeper_C is
   pragma SPARK_Mode (Off);

   use type Interfaces.Unsigned_64;

   Bad_Input : exception;

   function To_Bool (V : unsigned_char) return Boolean is
   begin
      case V is
         when 0 => return False;
         when 1 => return True;
         when others => raise Bad_Input;
      end case;
   end To_Bool;

   function To_Caps (Mask : Interfaces.Unsigned_64) return Policy.Cap_Set is
      Set : Policy.Cap_Set := (others => False);
   begin
      for C in Policy.Capability loop
         Set (C) := (Interfaces.Shift_Right (Mask, Natural (C)) and 1) = 1;
      end loop;
      return Set;
   end To_Caps;

   function Validate (Input : access constant C_Input) return int is
   begin
      if Input = null then
         return -1;
      end if;
      declare
         I : C_Input renames Input.all;
      begin
         if I.Profile > Policy.Profile_Kind'Pos (Policy.Profile_Kind'Last)
           or else I.Network > Policy.Network_Mode'Pos (Policy.Network_Mode'Last)
           or else I.Userns > Policy.Userns_Mode'Pos (Policy.Userns_Mode'Last)
           or else I.Seccomp > Policy.Seccomp_Mode'Pos (Policy.Seccomp_Mode'Last)
           or else I.Apparmor > Policy.Apparmor_Mode'Pos (Policy.Apparmor_Mode'Last)
           or else I.Selinux > Policy.Selinux_Type'Pos (Policy.Selinux_Type'Last)
         then
            return -1;
         end if;
         declare
            S : constant Policy.Spec_Input :=
              (Profile              => Policy.Profile_Kind'Val (I.Profile),
               Namespace_Privileged => To_Bool (I.Namespace_Privileged),
               Network              => Policy.Network_Mode'Val (I.Network),
               Refuse_Unconfined    => To_Bool (I.Refuse_Unconfined),
               Privileged           => To_Bool (I.Privileged),
               Held                 => To_Caps (I.Held),
               Added                => To_Caps (I.Added),
               UID_Known            => To_Bool (I.UID_Known),
               UID                  => Policy.UID_Value (I.UID),
               Userns               => Policy.Userns_Mode'Val (I.Userns),
               Maps_Host_Root       => To_Bool (I.Maps_Host_Root),
               Host_Network         => To_Bool (I.Host_Network),
               Host_PID             => To_Bool (I.Host_PID),
               Host_IPC             => To_Bool (I.Host_IPC),
               No_New_Privs         => To_Bool (I.No_New_Privs),
               Seccomp              => Policy.Seccomp_Mode'Val (I.Seccomp),
               Apparmor             => Policy.Apparmor_Mode'Val (I.Apparmor),
               Selinux              => Policy.Selinux_Type'Val (I.Selinux),
               Selinux_User_Role    => To_Bool (I.Selinux_User_Role),
               Proc_Unmasked        => To_Bool (I.Proc_Unmasked),
               Host_Path            => To_Bool (I.Host_Path),
               Host_Port            => To_Bool (I.Host_Port),
               Unsafe_Sysctl        => To_Bool (I.Unsafe_Sysctl),
               Devices              => To_Bool (I.Devices),
               Bad_Unified_Key      => To_Bool (I.Bad_Unified_Key),
               Log_Outside          => To_Bool (I.Log_Outside));
         begin
            if not Policy.Well_Formed (S) then
               return -1;
            end if;
            return int (Policy.Validate (S));
         end;
      end;
   exception
      when Bad_Input =>
         return -1;
      when others =>
         return -2;
   end Validate;

   function Version return int is
   begin
      return 3;
   exception
      when others =>
         return -2;
   end Version;

   function Rule_Count return int is
   begin
      return Policy.Last_Rule;
   end Rule_Count;

end Gatekeeper_C;
