with Policy;

package body Gatekeeper_C is
   pragma SPARK_Mode (Off);

   Bad_Input : exception;

   function To_Bool (V : unsigned_char) return Boolean is
   begin
      case V is
         when 0 => return False;
         when 1 => return True;
         when others => raise Bad_Input;
      end case;
   end To_Bool;

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
         then
            return -1;
         end if;
         declare
            S : constant Policy.Spec_Input :=
              (Profile              => Policy.Profile_Kind'Val (I.Profile),
               Namespace_Privileged => To_Bool (I.Namespace_Privileged),
               Network              => Policy.Network_Mode'Val (I.Network),
               Privileged           => To_Bool (I.Privileged),
               UID_Known            => To_Bool (I.UID_Known),
               UID                  => Policy.UID_Value (I.UID),
               Userns               => Policy.Userns_Mode'Val (I.Userns),
               Add_All              => To_Bool (I.Add_All),
               Cap_Add              =>
                 (Policy.Cap_Sys_Admin => To_Bool (I.Add_Sys_Admin),
                  Policy.Cap_Net_Admin => To_Bool (I.Add_Net_Admin)),
               Drop_All             => To_Bool (I.Drop_All),
               Cap_Drop             =>
                 (Policy.Cap_Sys_Admin => To_Bool (I.Drop_Sys_Admin),
                  Policy.Cap_Net_Admin => To_Bool (I.Drop_Net_Admin)),
               Host_Network         => To_Bool (I.Host_Network),
               Host_PID             => To_Bool (I.Host_PID),
               Host_IPC             => To_Bool (I.Host_IPC),
               No_New_Privs         => To_Bool (I.No_New_Privs),
               Seccomp              => Policy.Seccomp_Mode'Val (I.Seccomp),
               Read_Only_Rootfs     => To_Bool (I.Read_Only_Rootfs),
               Sensitive_Mount      => To_Bool (I.Sensitive_Mount),
               Unsafe_Sysctl        => To_Bool (I.Unsafe_Sysctl));
         begin
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
      return 2;
   exception
      when others =>
         return -2;
   end Version;

end Gatekeeper_C;
